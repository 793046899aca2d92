package cluster

import (
	"sync"

	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
)

// cacheShards spreads the cache's lock.
const cacheShards = 64

// cache holds calls' last events as this node last saw them. It may be
// behind JetStream (another node moved the call on): the compare-and-set
// of every append catches that, and the call is read again. Past its size
// a shard forgets arbitrary entries.
type cache struct {
	shards [cacheShards]cacheShard
	max    int // per shard; 0: no cache
}

type cacheShard struct {
	mu sync.Mutex
	m  map[int64]jetstream.Head
}

func newCache(size int) *cache {
	c := &cache{}
	if size > 0 {
		c.max = max(size/cacheShards, 1)
	}
	for i := range c.shards {
		c.shards[i].m = make(map[int64]jetstream.Head)
	}
	return c
}

func (c *cache) shard(id int64) *cacheShard {
	return &c.shards[(uint64(id)*0x9E3779B97F4A7C15)>>58]
}

func (c *cache) get(id int64) (jetstream.Head, bool) {
	if c.max == 0 {
		return jetstream.Head{}, false
	}
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r, ok := sh.m[id]
	return r, ok
}

func (c *cache) put(id int64, r jetstream.Head) {
	if c.max == 0 {
		return
	}
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old, ok := sh.m[id]; ok && old.Seq > r.Seq {
		return // a newer event is known already
	}
	if len(sh.m) >= c.max {
		for k := range sh.m { // forget an arbitrary entry
			delete(sh.m, k)
			break
		}
	}
	sh.m[id] = r
}

func (c *cache) drop(id int64) {
	if c.max == 0 {
		return
	}
	sh := c.shard(id)
	sh.mu.Lock()
	delete(sh.m, id)
	sh.mu.Unlock()
}
