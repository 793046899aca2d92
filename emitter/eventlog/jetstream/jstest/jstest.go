// Package jstest starts real NATS JetStream servers inside a test process:
// one server, or a cluster of several, each stopped when the test ends.
// callfsm's tests run against these, never against a mock of NATS.
package jstest

import (
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// readyTimeout bounds how long a server may take to accept connections.
const readyTimeout = 10 * time.Second

// RunServer starts a JetStream server on a free loopback port, storing in a
// temporary directory, and shuts it down when the test ends. opts, if
// given, change its options (to require a password, say).
func RunServer(t testing.TB, opts ...func(*server.Options)) *server.Server {
	t.Helper()
	o := &server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	}
	for _, f := range opts {
		f(o)
	}
	s := start(t, o)
	again := o.Clone()
	again.Port = s.Addr().(*net.TCPAddr).Port // the port it got, for Restart
	started.Store(s, again)
	return s
}

// started holds the options of the servers RunServer started, for Restart.
var started sync.Map // *server.Server → *server.Options

// Restart starts again, on the same port and store directory, a server
// RunServer started and the test shut down (to play NATS going away and
// coming back); it too is shut down when the test ends.
func Restart(t testing.TB, s *server.Server) *server.Server {
	t.Helper()
	v, ok := started.Load(s)
	if !ok {
		t.Fatal("jstest: Restart of a server RunServer did not start")
	}
	o := v.(*server.Options).Clone()
	again := start(t, o)
	started.Store(again, o)
	return again
}

// RunCluster starts a JetStream cluster of n servers on loopback, waits
// until it has a meta leader, and shuts the servers down when the test
// ends. Connect to any of them, or to all with ClusterURLs.
func RunCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	ports := freePorts(t, 2*n)
	routes := make([]*url.URL, n)
	for i := range n {
		routes[i] = &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[n+i])}
	}
	servers := make([]*server.Server, n)
	for i := range n {
		servers[i] = start(t, &server.Options{
			ServerName: fmt.Sprintf("S%d", i+1),
			Host:       "127.0.0.1", Port: ports[i], JetStream: true, StoreDir: t.TempDir(),
			NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "callfsm-test", Host: "127.0.0.1", Port: ports[n+i]},
			Routes:  routes,
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for !clusterReady(servers) {
		if time.Now().After(deadline) {
			t.Fatal("jstest: the cluster elected no JetStream meta leader in 30 s")
		}
		// The servers elect their leader among themselves and tell no
		// one: poll their state.
		time.Sleep(20 * time.Millisecond)
	}
	return servers
}

// clusterReady reports whether servers have a meta leader that every
// server follows.
func clusterReady(servers []*server.Server) bool {
	leader := false
	for _, s := range servers {
		leader = leader || s.JetStreamIsLeader()
		if !s.JetStreamIsCurrent() {
			return false
		}
	}
	return leader
}

// ClusterURLs returns the client URLs of servers, comma-separated, as
// nats.Connect takes them.
func ClusterURLs(servers []*server.Server) string {
	var u string
	for i, s := range servers {
		if i > 0 {
			u += ","
		}
		u += s.ClientURL()
	}
	return u
}

// Connect opens a connection to url, closed when the test ends. It keeps
// reconnecting for as long as the test runs.
func Connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("jstest: connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func start(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("jstest: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(readyTimeout) {
		s.Shutdown()
		t.Fatalf("jstest: nats-server %s not ready in %v", opts.ServerName, readyTimeout)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// freePorts returns n loopback ports free at the time of the call.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	ls := make([]net.Listener, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("jstest: %v", err)
		}
		ls[i] = l
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
