package simulate

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/fsm"
	"github.com/callfsm/callfsm/timeout"
)

// A worker simulates every K-th call (those whose index is k modulo K) on
// its own engine and virtual clock, in one goroutine. Its events come out
// in order of (time, call_id, event) as chunks of encoded lines that the
// merger interleaves with the other workers'. Everything about a call
// depends only on the seed and the call's index, so the output does not
// depend on K.
type worker struct {
	s     *Simulator
	k, K  int64
	clock *timeout.Virtual
	eng   *call.Engine
	ctx   context.Context
	err   error // the first error; stops the worker

	// arrivals: the shared arrival sequence, walked up to this worker's
	// next call.
	arrivals *rand.Rand
	arrIdx   int64
	arrAt    int64
	next     int64  // index of the next call to arrive here
	arriveFn func() // w.arrive, made once

	src      rand.PCG   // reseeded for each call: its own stream
	rng      *rand.Rand // draws from src
	faultSrc rand.PCG   // reseeded for each call: its fault's stream
	faultRng *rand.Rand // draws from faultSrc
	calls    map[int64]*simCall
	free     []*simCall
	buf      []byte // scratch for building strings

	out        chan *chunk // to the merger
	recycled   chan *chunk // from the merger
	cur        *chunk
	batchStart int   // first entry of cur with time batchAt
	batchAt    int64 // time of the entries being gathered

	events   int64
	outcomes []int
	faults   [len(faultKinds)]int
}

// simCall is a live call's plan and progress.
type simCall struct {
	w       *worker
	c       *call.Call
	details call.Details
	steps   []compiledStep
	ev      [maxEvents]planned
	n       int // planned events
	emitted int // events emitted so far
	inj     injection
	held    []byte // FaultReorder: the line delivered late
	ident   []byte // the encoded fields every event of the call shares
	fire    func() // applies the next input; made once per simCall
}

// chunkEntries is how many lines a chunk gathers before going to the
// merger; chunkDepth how many chunks a worker may have in flight.
const (
	chunkEntries = 256
	chunkDepth   = 8
)

// chunk is a run of encoded lines in output order.
type chunk struct {
	buf  []byte
	ents []entry
}

// entry is one line of a chunk, with its place in the output order.
type entry struct {
	at         int64 // nanoseconds after the start: the order's first key
	id         int64 // call_id, the second
	ts         int64 // the line's timestamp
	start, end int32 // the line in buf, '\n' included
	ord        int16 // the line's place among its call's lines: the third key
	state      uint8 // the state whose event the line is
	fault      uint8 // 1 + index in faultKinds when the line has findings
	rules      rules // findings the line must yield
}

func (a *entry) less(b *entry) bool {
	return a.at < b.at || a.at == b.at && (a.id < b.id || a.id == b.id && a.ord < b.ord)
}

func newWorker(s *Simulator, k, K int) *worker {
	w := &worker{
		s: s, k: int64(k), K: int64(K),
		clock:    timeout.NewVirtual(s.cfg.Start),
		arrivals: rand.New(arrivalSource(s.cfg.Seed)),
		next:     int64(k),
		calls:    make(map[int64]*simCall),
		out:      make(chan *chunk, chunkDepth),
		recycled: make(chan *chunk, chunkDepth+2),
		outcomes: make([]int, len(s.life.states)),
	}
	w.rng = rand.New(&w.src)
	w.faultRng = rand.New(&w.faultSrc)
	w.arriveFn = w.arrive
	w.cur = newChunk()
	return w
}

func newChunk() *chunk {
	return &chunk{buf: make([]byte, 0, chunkEntries*480), ents: make([]entry, 0, chunkEntries)}
}

// run simulates the worker's calls until the last has ended, then closes
// out. It returns the first error.
func (w *worker) run(ctx context.Context) error {
	defer close(w.out)
	w.ctx = ctx
	eng, err := call.New(call.Config{
		Spec: w.s.cfg.Spec, Clock: w.clock, Emitter: w,
		OnError:      func(_ int64, err error) { w.fail(err) },
		NewSessionID: w.sessionID,
	})
	if err != nil {
		return err
	}
	w.eng = eng
	defer eng.Close()

	if w.next < int64(w.s.cfg.Calls) {
		w.clock.AfterFunc(time.Duration(w.arrival(w.next)), w.arriveFn)
	}
	for steps := 1; w.err == nil && w.clock.Step(); steps++ {
		if steps%1024 == 0 && ctx.Err() != nil {
			w.fail(ctx.Err())
		}
	}
	if w.err != nil {
		return w.err
	}
	if len(w.calls) > 0 {
		return fmt.Errorf("simulate: internal: %d calls still live when the clock has nothing left to fire", len(w.calls))
	}
	w.endBatch(true)
	return w.err
}

func (w *worker) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// arrival returns when call i arrives, walking the arrival sequence.
func (w *worker) arrival(i int64) int64 {
	for w.arrIdx < i {
		w.arrAt += w.s.arrive.draw(w.arrivals)
		w.arrIdx++
	}
	return w.arrAt
}

// arrive creates the next call of this worker and arms the one after.
func (w *worker) arrive() {
	if w.err != nil {
		return
	}
	sc := w.plan(w.next)
	w.calls[sc.details.CallID] = sc
	c, err := w.eng.Create(w.ctx, sc.details)
	if err != nil {
		w.fail(err)
		return
	}
	sc.c = c
	now := sc.ev[0].at
	if w.next += w.K; w.next < int64(w.s.cfg.Calls) {
		w.clock.AfterFunc(time.Duration(w.arrival(w.next)-now), w.arriveFn)
	}
}

// sessionID makes the session_id of the call being created, from its
// stream.
func (w *worker) sessionID() string {
	w.buf = appendUUID(w.buf[:0], w.rng)
	return string(w.buf)
}

// plan draws everything about call i from its own stream: outcome, way
// there, people, product, durations and fault.
func (w *worker) plan(i int64) *simCall {
	s, rng := w.s, w.rng
	seedCall(&w.src, &w.faultSrc, s.cfg.Seed, i)

	var sc *simCall
	if n := len(w.free); n > 0 {
		sc, w.free = w.free[n-1], w.free[:n-1]
		*sc = simCall{w: w, held: sc.held[:0], ident: sc.ident[:0], fire: sc.fire}
	} else {
		sc = &simCall{w: w}
		sc.fire = sc.input
	}

	// The outcome, then one of its variants.
	u := rng.Int64N(s.weights)
	var o *outcome
	for k := range s.outcomes {
		if o = &s.outcomes[k]; u < o.weight {
			break
		}
		u -= o.weight
	}
	v := rng.Int64N(o.total)
	var vr *compiled
	for k := range o.variants {
		if vr = &o.variants[k]; v < vr.weight {
			break
		}
		v -= vr.weight
	}
	sc.steps = vr.steps

	// The people and the product.
	d := &sc.details
	d.CallID = FirstCallID + i
	first, last := rng.IntN(len(firstNames)), rng.IntN(len(lastNames))
	w.buf = append(append(append(w.buf[:0], firstNames[first]...), ' '), lastNames[last]...)
	d.User.Name = string(w.buf)
	w.buf = append(append(append(w.buf[:0], lowerFirst[first]...), '.'), lowerLast[last]...)
	if rng.IntN(2) == 0 {
		w.buf = appendDigits(w.buf, rng, 2)
	}
	w.buf = append(append(w.buf, '@'), emailDomains[rng.IntN(len(emailDomains))]...)
	d.User.Email = string(w.buf)
	cc := rng.IntN(1000)
	for _, c := range countries {
		if cc < c.permill {
			d.User.CountryCode = c.code
			if rng.IntN(100) < 85 {
				w.buf = c.phone(w.buf[:0], rng)
				phone := string(w.buf)
				d.User.PhoneNumber = &phone
			}
			break
		}
		cc -= c.permill
	}
	d.UserID = 10_000 + rng.Int64N(90_000)
	if rng.IntN(100) < 30 {
		id := 100_000 + rng.Int64N(900_000)
		d.ScheduleID = &id
	}
	d.Agent = agents[rng.IntN(len(agents))]
	d.Meta.Product = products[rng.IntN(len(products))]

	// The events, with their times.
	l := s.life
	at := w.arrival(i)
	sc.ev[0] = planned{state: l.initial, at: at, ts: w.ts(at)}
	for k, st := range sc.steps {
		if st.trigger == fsm.Timeout {
			at += int64(l.timeout[st.from])
		} else {
			d := st.dwell.draw(rng) * int64(time.Millisecond)
			if limit := l.timeout[st.from]; limit > 0 {
				d = min(d, int64(beforeDeadline(limit)))
			}
			at += d
		}
		sc.ev[k+1] = planned{state: st.to, at: at, ts: w.ts(at), timeout: st.trigger == fsm.Timeout}
	}
	sc.n = len(sc.steps) + 1

	s.faults.plan(w.faultRng, sc.ev[:sc.n], &sc.inj)
	if sc.inj.kind != "" {
		w.faults[slices.Index(faultKinds[:], sc.inj.kind)]++
	}
	return sc
}

// beforeDeadline is the longest an input may wait in a state whose timeout
// is d and still come clearly first: a second early, or a tenth of d.
func beforeDeadline(d time.Duration) time.Duration {
	if d > 2*time.Second {
		return d - time.Second
	}
	return d * 9 / 10
}

// ts is the timestamp of an instant at nanoseconds after the start, as the
// engine writes it.
func (w *worker) ts(at int64) int64 { return w.s.cfg.Start.Add(time.Duration(at)).Unix() }

// input applies the call's next input, at its planned time.
func (sc *simCall) input() {
	w := sc.w
	if w.err != nil {
		return
	}
	st := sc.steps[sc.emitted-1]
	if _, err := sc.c.Apply(w.ctx, call.Input{Trigger: st.trigger, Participant: st.participant}); err != nil {
		w.fail(fmt.Errorf("simulate: call %d: %s: %w", sc.details.CallID, st.trigger, err))
	}
}

// Emit receives every event of the worker's engine, in the worker's
// goroutine: it checks the event against the plan, applies the call's
// fault, adds its lines to the chunk and arms the call's next input.
func (w *worker) Emit(_ context.Context, ev event.Event) error {
	if w.err != nil {
		return w.err
	}
	sc := w.calls[ev.CallID]
	if sc == nil {
		return w.internal(fmt.Errorf("event %s for call %d, which is not live", ev.Event, ev.CallID))
	}
	j := sc.emitted
	l := w.s.life
	if j >= sc.n || ev.Event != l.names[sc.ev[j].state] || ev.Timestamp != sc.ev[j].ts {
		return w.internal(fmt.Errorf("call %d emitted %s at %d; its plan has %d events", ev.CallID, ev.Event, ev.Timestamp, sc.n))
	}
	p := &sc.ev[j]
	if p.at != w.batchAt {
		w.endBatch(false)
		w.batchAt = p.at
	}

	inj := &sc.inj
	fault := uint8(0)
	if inj.kind != "" {
		fault = uint8(slices.Index(faultKinds[:], inj.kind) + 1)
	}
	ord := int16(2 * j)
	here := inj.kind != "" && inj.pos == j
	switch {
	case here && inj.kind == FaultDrop:
	case here && inj.kind == FaultReorder:
		sc.held = sc.appendLine(sc.held[:0], &ev, p.state)
	default:
		w.add(p, ev.CallID, ord, sc, &ev, p.state, inj.at[j], fault)
	}
	if here && inj.kind == FaultDuplicate {
		w.add(p, ev.CallID, ord+1, sc, &ev, p.state, inj.extra, fault)
	}
	if here && inj.kind == FaultIllegal {
		x := ev
		x.Event, x.Participant = l.names[inj.state], ""
		w.add(p, ev.CallID, ord+1, sc, &x, inj.state, inj.extra, fault)
	}
	if inj.kind == FaultReorder && inj.pos+1 == j {
		w.addLine(p.at, ev.CallID, sc.ev[j-1].ts, ord+1, sc.held, sc.ev[j-1].state, inj.extra, fault)
	}

	sc.emitted++
	w.events++
	if j+1 < sc.n {
		if sc.steps[j].trigger != fsm.Timeout {
			w.clock.AfterFunc(time.Duration(sc.ev[j+1].at-p.at), sc.fire)
		}
		return nil
	}
	w.outcomes[p.state]++
	delete(w.calls, ev.CallID)
	sc.c = nil
	w.free = append(w.free, sc)
	return nil
}

func (w *worker) internal(err error) error {
	err = fmt.Errorf("simulate: internal: %w", err)
	w.fail(err)
	return err
}

// add encodes an event as a line of the current chunk.
func (w *worker) add(p *planned, id int64, ord int16, sc *simCall, ev *event.Event, state int, r rules, fault uint8) {
	c := w.cur
	start := len(c.buf)
	c.buf = sc.appendLine(c.buf, ev, state)
	w.entry(p.at, id, ev.Timestamp, ord, start, state, r, fault)
}

// The keys that delimit the fields events of a call share, in the order
// event.Event.AppendJSON writes them.
var (
	eventKey     = []byte(`{"event":`)
	sessionKey   = []byte(`,"session_id":`)
	timestampKey = []byte(`,"timestamp":`)
)

// appendLine appends ev's line, '\n' included: the bytes of
// event.Event.AppendJSON. The fields from session_id to meta are the same
// for every event of a call, so they are encoded once, from the call's
// first event, and copied after that; the event name (encoded once per
// state), the participant and the timestamp are written around them.
func (sc *simCall) appendLine(b []byte, ev *event.Event, state int) []byte {
	if len(sc.ident) == 0 {
		first := *ev
		first.Participant = ""
		full := first.AppendJSON(sc.ident[:0])
		start := bytes.Index(full, sessionKey)
		end := bytes.LastIndex(full, timestampKey)
		sc.ident = append(full[:0], full[start:end]...)
	}
	b = append(b, eventKey...)
	b = append(b, sc.w.s.life.quoted[state]...)
	b = append(b, sc.ident...)
	switch ev.Participant {
	case "":
	case event.User:
		b = append(b, `,"participant":"user"`...)
	case event.Agent:
		b = append(b, `,"participant":"agent"`...)
	default:
		return append(ev.AppendJSON(b[:len(b)-len(sc.ident)-len(sc.w.s.life.quoted[state])-len(eventKey)]), '\n')
	}
	b = append(b, timestampKey...)
	b = strconv.AppendInt(b, ev.Timestamp, 10)
	return append(b, '}', '\n')
}

// addLine adds an encoded line to the current chunk.
func (w *worker) addLine(at, id, ts int64, ord int16, line []byte, state int, r rules, fault uint8) {
	c := w.cur
	start := len(c.buf)
	c.buf = append(c.buf, line...)
	w.entry(at, id, ts, ord, start, state, r, fault)
}

func (w *worker) entry(at, id, ts int64, ord int16, start, state int, r rules, fault uint8) {
	if r == (rules{}) {
		fault = 0
	}
	c := w.cur
	c.ents = append(c.ents, entry{at: at, id: id, ts: ts, start: int32(start), end: int32(len(c.buf)),
		ord: ord, state: uint8(state), fault: fault, rules: r})
}

// endBatch puts the lines of the instant just finished in order and, when
// the chunk is full (or last), hands it to the merger.
func (w *worker) endBatch(last bool) {
	c := w.cur
	if batch := c.ents[w.batchStart:]; len(batch) > 1 {
		slices.SortFunc(batch, func(a, b entry) int {
			return cmp.Or(cmp.Compare(a.id, b.id), cmp.Compare(a.ord, b.ord))
		})
	}
	w.batchStart = len(c.ents)
	if len(c.ents) < chunkEntries && !last || len(c.ents) == 0 {
		return
	}
	select {
	case w.out <- c:
	case <-w.ctx.Done():
		w.fail(w.ctx.Err())
		return
	}
	select {
	case w.cur = <-w.recycled:
		w.cur.buf, w.cur.ents = w.cur.buf[:0], w.cur.ents[:0]
	default:
		w.cur = newChunk()
	}
	w.batchStart = 0
}
