package webhook_test

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

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
