package httpapi_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Many clients drive many calls at once, while others read histories, list
// calls and scrape metrics, and a stream receives everything: run with
// -race. Every call's events arrive in order, and the stream's ids count
// 1, 2, 3, … with no gap.
func TestConcurrentCalls(t *testing.T) {
	const workers, perWorker = 16, 15
	path := []string{"ring", "accept", "start", "end"}
	want := []string{"initiated", "ringing", "accepted", "started", "successful"}
	r := newRig(t, rigConfig{})
	r.srv.Client().Transport.(*http.Transport).MaxIdleConnsPerHost = 2 * workers
	s := r.openStream("/v1/events", "0")

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for k := range perWorker {
				id := int64(w*1000 + k + 1)
				if !assert.Equal(t, 201, r.do("POST", "/v1/calls", seedBody(id)).status) {
					return
				}
				for _, tr := range path {
					resp := r.do("POST", fmt.Sprint("/v1/calls/", id, "/", tr), "")
					if !assert.Equal(t, 200, resp.status, "%s", resp.body) {
						return
					}
				}
				v := r.view(id)
				assert.Equal(t, want, eventNames(v))
			}
		})
	}
	for _, p := range []string{"/v1/calls?limit=7", "/metrics", "/v1/calls/1001", "/readyz"} {
		wg.Go(func() {
			for range 50 {
				resp := r.do("GET", p, "")
				assert.Contains(t, []int{200, 404}, resp.status, "%s", resp.body)
			}
		})
	}
	wg.Wait()

	total := workers * perWorker * len(want)
	seen := make(map[int64][]string)
	for i := 1; i <= total; i++ {
		m := s.nextEvent()
		require.Equal(t, strconv.Itoa(i), m.id)
		var id int64
		_, err := fmt.Sscanf(m.data[strings.Index(m.data, `"call_id":`):], `"call_id":%d`, &id)
		require.NoError(t, err)
		seen[id] = append(seen[id], strings.TrimPrefix(m.event, "popin_outgoing_call_"))
	}
	require.Len(t, seen, workers*perWorker)
	for id, got := range seen {
		assert.Equal(t, want, got, "call %d", id)
	}
	assert.Equal(t, 0, r.eng.Len())
	assert.Contains(t, string(r.must(200, "GET", "/metrics", "")),
		fmt.Sprintf(`callfsm_transitions_total{event="popin_outgoing_call_successful"} %d`, workers*perWorker))
}
