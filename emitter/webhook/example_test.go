package webhook_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
	"github.com/callfsm/callfsm/emitter/webhook"
)

// A receiver written in Go checks each delivery with Verify, on the raw
// body, before it parses the JSON.
func Example() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // shared with the sender; NewSecret makes one
	body := []byte(`{"event":"popin_outgoing_call_ringing","call_id":28844}`)
	sent := time.Unix(1771832273, 0)

	// What the Dispatcher sends with every request:
	sig, err := webhook.Sign(secret, "evt_42", sent, body)
	if err != nil {
		panic(err)
	}
	h := http.Header{}
	h.Set(webhook.HeaderID, "evt_42")
	h.Set(webhook.HeaderTimestamp, strconv.FormatInt(sent.Unix(), 10))
	h.Set(webhook.HeaderSignature, sig)
	fmt.Println(sig)

	// What the receiver checks, ten seconds later:
	now := sent.Add(10 * time.Second)
	fmt.Println(webhook.Verify(secret, h, body, 5*time.Minute, now))
	fmt.Println(webhook.Verify(secret, h, []byte(`{"event":"popin_outgoing_call_missed","call_id":28844}`), 5*time.Minute, now))
	fmt.Println(webhook.Verify(secret, h, body, 5*time.Minute, sent.Add(time.Hour)))
	// Output:
	// v1,7DoipgdLwCUmQbjIgiL4sNogB6NHtY6WsgJ2TvieQKs=
	// <nil>
	// webhook: no matching signature: none of the webhook-signature values is a v1 signature of this id, timestamp and body
	// webhook: bad timestamp: webhook-timestamp is 3600s old, more than the tolerance 5m0s
}

// Each node of a cluster delivers a URL from the JetStream log it shares
// with the others: the same JetStreamConfig on every node (but its own
// DeadLetterPath), Run until shutdown. The nodes share the stream's
// partitions, one durable consumer each.
func ExampleNewJetStream() {
	dir, err := os.MkdirTemp("", "callfsm-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		panic(err)
	}
	go srv.Start()
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	if !srv.ReadyForConnections(10 * time.Second) {
		panic("nats-server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	log, err := jetstream.Open(context.Background(), jetstream.Config{Conn: nc, Partitions: 4})
	if err != nil {
		panic(err)
	}
	defer log.Close()

	d, err := webhook.NewJetStream(webhook.JetStreamConfig{
		Log:            log,
		URL:            "https://crm.example.com/hooks/callfsm",
		Secret:         "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		Name:           "crm",
		DeadLetterPath: filepath.Join(dir, "crm.dead.jsonl"),
	})
	if err != nil {
		panic(err)
	}
	for p := range log.Partitions() {
		fmt.Println(d.ConsumerName(p))
	}
	// go d.Run(ctx) … d.Shutdown(ctx), then close the log and the connection.

	// The pin must outlast AckWait (see the package doc):
	_, err = webhook.NewJetStream(webhook.JetStreamConfig{
		Log: log, URL: "https://crm.example.com/hooks/callfsm", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		DeadLetterPath: filepath.Join(dir, "crm.dead.jsonl"), AckWait: 30 * time.Second,
	})
	fmt.Println(err)
	// Output:
	// crm-p0
	// crm-p1
	// crm-p2
	// crm-p3
	// webhook: JetStreamConfig.PinnedTTL: 30s is less than AckWait 30s + 2s: a node's messages would not all be due for redelivery before another node is pinned
}
