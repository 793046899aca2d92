package webhook

import (
	"crypto/rand"
	"encoding/binary"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// nodes is what a JetStreamDispatcher knows of the other nodes delivering
// to its URL, and which partitions it owns among them.
//
// The server alone would not spread the partitions: it pins a partition to
// the pull request at the head of its waiting queue (a FIFO) when it has a
// message and no pin, so the node that pulls first gets every partition and
// keeps them. So each node pulls only the partitions it owns, by
// rendezvous hashing over the nodes it knows: every node announces itself
// ("hello <id>") on a plain NATS subject every PinnedTTL/6 (at most 5s),
// answers a newcomer at once, says "bye <id>" when it stops, and forgets a
// node not heard of for 3 periods. A partition changes hands only when the
// nodes change, and then only between the old owner and the new. The pin
// keeps delivery safe while views differ: two nodes pulling one partition
// still deliver it one at a time.
type nodes struct {
	subject string // _CALLFSM.webhook.<stream>.<name>.nodes
	self    string
	every   time.Duration // between announcements
	log     *slog.Logger
	changed chan struct{} // a node came or went (capacity 1)

	mu    sync.Mutex
	nc    *nats.Conn           // set by listen
	peers map[string]time.Time // other nodes, by id: when last heard of
}

func newNodes(stream, name string, pinnedTTL time.Duration, log *slog.Logger) *nodes {
	return &nodes{
		subject: "_CALLFSM.webhook." + stream + "." + name + ".nodes",
		self:    rand.Text(),
		every:   min(pinnedTTL/6, 5*time.Second),
		log:     log,
		changed: make(chan struct{}, 1),
		peers:   make(map[string]time.Time),
	}
}

// listen subscribes to the other nodes' announcements on nc.
func (n *nodes) listen(nc *nats.Conn) (*nats.Subscription, error) {
	n.mu.Lock()
	n.nc = nc
	n.mu.Unlock()
	return nc.Subscribe(n.subject, n.hear)
}

// hear takes an announcement.
func (n *nodes) hear(m *nats.Msg) {
	kind, id, ok := strings.Cut(string(m.Data), " ")
	if !ok || id == "" || id == n.self {
		return
	}
	n.mu.Lock()
	_, known := n.peers[id]
	switch kind {
	case "hello":
		n.peers[id] = time.Now()
	case "bye":
		delete(n.peers, id)
	default:
		n.mu.Unlock()
		return
	}
	n.mu.Unlock()
	if kind == "hello" && !known {
		n.hello() // let the newcomer know of this node now, not a period later
	}
	if known != (kind == "hello") {
		n.log.Info("webhook: the nodes changed", "node", id, "says", kind)
		n.notify()
	}
}

func (n *nodes) notify() {
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

// hello and bye announce this node.
func (n *nodes) hello() { n.say("hello") }
func (n *nodes) bye()   { n.say("bye") }

func (n *nodes) say(kind string) {
	n.mu.Lock()
	nc := n.nc
	n.mu.Unlock()
	if nc == nil {
		return
	}
	if err := nc.Publish(n.subject, []byte(kind+" "+n.self)); err != nil && !nc.IsClosed() {
		n.log.Warn("webhook: announcing this node failed", "err", err)
	}
}

// expire forgets the nodes not heard of for 3 periods.
func (n *nodes) expire() {
	n.mu.Lock()
	gone := false
	for id, at := range n.peers {
		if time.Since(at) > 3*n.every {
			delete(n.peers, id)
			gone = true
			n.log.Info("webhook: the nodes changed", "node", id, "says", "nothing for a while")
		}
	}
	n.mu.Unlock()
	if gone {
		n.notify()
	}
}

// count is how many nodes this node knows of, itself included.
func (n *nodes) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.peers) + 1
}

// owned tells, for each of parts partitions, whether this node owns it:
// whether its id has the highest score for the partition among the nodes
// it knows.
func (n *nodes) owned(parts int) []bool {
	n.mu.Lock()
	ids := make([]string, 0, len(n.peers)+1)
	ids = append(ids, n.self)
	for id := range n.peers {
		ids = append(ids, id)
	}
	n.mu.Unlock()
	own := make([]bool, parts)
	for p := range own {
		best, bestID := uint64(0), ""
		for _, id := range ids {
			if s := score(id, p); s > best || (s == best && id > bestID) {
				best, bestID = s, id
			}
		}
		own[p] = bestID == n.self
	}
	return own
}

// score is node id's rendezvous weight for partition p.
func score(id string, p int) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(p))
	_, _ = h.Write(b[:])
	// FNV's last bytes barely reach its high bits: finish with SplitMix64.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
