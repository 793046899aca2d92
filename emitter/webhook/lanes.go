package webhook

// lanes queues records per call, so that each call's records are delivered
// one at a time in the order they were pushed while different calls go in
// parallel. It does no locking: its owner guards it with its own mutex.
type lanes[T any] struct {
	calls map[int64]*lane[T] // calls with queued records, by call_id
	ready []*lane[T]         // calls whose first record waits for a worker
}

// lane is one call's queued records. The first is the one being delivered
// (or waiting for a worker); the next waits until it is finished.
type lane[T any] struct {
	id    int64
	items []T
	busy  bool // a worker has the first record
}

func newLanes[T any]() lanes[T] { return lanes[T]{calls: make(map[int64]*lane[T])} }

// push queues it behind call id's records. It reports whether the call
// became ready: a worker may take it.
func (ls *lanes[T]) push(id int64, it T) bool {
	l := ls.calls[id]
	fresh := l == nil
	if fresh {
		l = &lane[T]{id: id}
		ls.calls[id] = l
		ls.ready = append(ls.ready, l)
	}
	l.items = append(l.items, it)
	return fresh
}

// hasReady reports whether a call waits for a worker.
func (ls *lanes[T]) hasReady() bool { return len(ls.ready) > 0 }

// take hands the next ready call to a worker, with the record to deliver.
// Call it only when hasReady.
func (ls *lanes[T]) take() (*lane[T], T) {
	l := ls.ready[0]
	ls.ready[0] = nil
	ls.ready = ls.ready[1:]
	l.busy = true
	return l, l.items[0]
}

// finish drops l's first record, delivered or dead-lettered. It reports
// whether the call is ready again with its next record.
func (ls *lanes[T]) finish(l *lane[T]) bool {
	var zero T
	l.items[0] = zero
	l.items = l.items[1:]
	l.busy = false
	if len(l.items) == 0 {
		delete(ls.calls, l.id)
		return false
	}
	ls.ready = append(ls.ready, l)
	return true
}

// abandon removes the records of the calls whose first record matches, but
// for a record a worker has: that one stays until finish. It calls gone for
// each record removed.
func (ls *lanes[T]) abandon(match func(T) bool, gone func(T)) {
	ready := ls.ready[:0]
	for _, l := range ls.ready {
		if !match(l.items[0]) {
			ready = append(ready, l)
		}
	}
	clear(ls.ready[len(ready):])
	ls.ready = ready
	for id, l := range ls.calls {
		if !match(l.items[0]) {
			continue
		}
		keep := 0
		if l.busy {
			keep = 1
		}
		for _, it := range l.items[keep:] {
			gone(it)
		}
		clear(l.items[keep:])
		l.items = l.items[:keep]
		if keep == 0 {
			delete(ls.calls, id)
		}
	}
}
