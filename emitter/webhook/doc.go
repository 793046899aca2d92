// Package webhook delivers call events to HTTP receivers as Standard
// Webhooks (https://www.standardwebhooks.com), reading them from the event
// log: a Dispatcher tails any eventlog.Log from a cursor file; a
// JetStreamDispatcher consumes a JetStream log shared by several nodes.
//
// # Signing
//
// Every delivery is a POST of the event's seed payload (event.Event's
// AppendJSON bytes) with Content-Type application/json, User-Agent
// callfsm-webhook/1 and the three Standard Webhooks headers:
//
//	webhook-id:        evt_<seq>   stable: the same on every retry and after a restart
//	webhook-timestamp: <unix seconds of this attempt>
//	webhook-signature: v1,<base64 HMAC-SHA256(key, id + "." + timestamp + "." + body)>
//
// The key is the secret "whsec_<base64>" decoded (NewSecret makes one), so
// any Standard Webhooks library verifies the deliveries. Receivers written
// in Go can call Verify; Sign is the same computation, for tests and tools.
//
// # Delivery
//
// A Dispatcher tails an eventlog.Log from its cursor and delivers to one
// URL:
//
//   - At least once. The cursor is the first Seq not yet delivered or
//     dead-lettered; it only moves past a contiguous prefix of finished
//     records and is persisted to Config.CursorPath (every 100 ms while it
//     moves, and when Run returns). A restart resends at most what was in
//     flight or finished behind an unfinished record: receivers dedupe on
//     webhook-id.
//   - In order per call: a call's next event is not sent until the
//     previous one is delivered or dead-lettered. Different calls are
//     delivered in parallel, up to Config.Parallel.
//   - Retries on network errors, 5xx, 408 and 429, with exponential
//     backoff and full jitter, or after the response's Retry-After
//     (seconds or an HTTP-date), capped at Config.MaxBackoff. Other
//     statuses (4xx, and 3xx: redirects are not followed) are not retried.
//     An event that is not retried, or fails Config.MaxAttempts times, is
//     appended to Config.DeadLetterPath (see DeadLetter) with the reason,
//     and its call moves on.
//   - Bounded: at most Config.Window records are held in memory. When a
//     receiver is slow the Dispatcher stops reading and the log absorbs the
//     backlog; appending to the log never waits for a receiver. A record
//     stuck in retries holds the window from moving past it, so a receiver
//     that fails one call for long (at most MaxAttempts attempts) delays
//     the others once Window records have piled up behind it.
//
// # Several receivers
//
// One Dispatcher serves one URL. For several URLs make several
// Dispatchers on the same log, each with its own CursorPath and
// DeadLetterPath (a cursor is a position in one receiver's delivery), and
// run and shut each down. They may share a Registerer: every metric
// carries a url label (the URL without password, query or fragment, which
// is also how the URL appears in logs and dead letters), so two URLs that
// differ only in their query cannot share one.
//
// # Cluster delivery (JetStream)
//
// When several `callfsm serve` nodes share one JetStream event log
// (emitter/eventlog/jetstream), NewJetStream makes a JetStreamDispatcher
// instead: the same signing, attempts, retries, backoff, dead letters and
// metrics, fed by durable JetStream consumers rather than a cursor file.
//
// Consumers. Each URL has one durable pull consumer per partition of the
// stream, named "<JetStreamConfig.Name>-p<partition>" (the Name defaults
// to a hash of the URL), filtered on the partition's subjects
// ("<prefix>.<partition>.*"), with explicit acks, DeliverPolicy all (a new
// endpoint gets the whole stream, as a new cursor file does with serve),
// MaxDeliver unlimited (MaxAttempts and dead letters bound the tries, the
// server never skips an event), MaxAckPending JetStreamConfig.Window, and
// the pinned_client priority policy (group "webhook") with
// JetStreamConfig.PinnedTTL and AckWait. Every node creates or updates
// them to this same configuration when Run starts, so all nodes must use
// the same Name, Window, AckWait and PinnedTTL. Consumers of an old Name
// are not removed: delete them with the nats CLI.
//
// Acknowledgement. A message is acknowledged after the receiver's 2xx, or
// after its dead letter is written and synced, never before; it is never
// nak'ed or terminated. While a node holds a message (queued behind its
// call's previous event, in flight, or waiting to retry) it tells the
// server it is in progress every AckWait/3, so that the server does not
// send it again. A message the server does send again (JetStream's
// NumDelivered > 1) is delivered again: at least once; receivers dedupe on
// webhook-id, which is EventID of the stream sequence, the same on every
// node.
//
// Order. A node pulls a partition with pull requests sent back to back,
// each lasting a sixth of PinnedTTL-AckWait; the server sends the
// partition's messages to the pinned node in stream order (redeliveries
// first), and that node delivers each call's events one at a time, in
// order, as a Dispatcher does (different calls go in parallel, up to
// Parallel). A delivery that never reached the node (its delivery sequence
// skips one) makes it drop what it holds of the partition and pause until
// the server sends it all again, in order.
//
// When the pin moves, the new node must not get a call's newer event while
// an older one is held, undelivered, by the old node. What the server does
// (nats-server v2.15.2, consumer.go) makes that so if every message the
// old node held is due for redelivery when the pin moves:
//
//   - the pin times out PinnedTTL after the pinned node's last pull
//     (setPinnedTimer is reset only by a pull carrying the pin); until
//     then the other nodes' pulls are passed over (nextWaiting);
//   - checkPending puts the messages whose AckWait has passed on the
//     redelivery queue, and getNextMsg serves that queue before any new
//     message: the new node gets them first. The queue is sorted by
//     sequence only within each check: a message that expires later goes
//     behind, whatever its sequence. So a node keeps a call's held
//     messages alive together, earliest first, and tells them in progress
//     again when one arrives behind them (or is sent again), so that the
//     server's timestamps of a call's messages never go down along the
//     call: they expire, and come back, in order.
//
// So a node tells the server a partition's messages are in progress only
// while it can vouch for the pin: a message brought the pin id, the server
// has not said the pin is another's, its last pull was sent less than
// margin = (PinnedTTL-AckWait)/2 ago, and none of its pulls since the pin
// was proven came AckWait+margin or more after the one before. The last
// "in progress" then reaches the server less than margin after a pull
// that kept the pin, and every message the server sent the node went out
// before that pull's end, so all are due before the pin can time out,
// provided the server handles the node's requests within margin of each
// other (NewJetStream wants margin ≥ 1s; it is 10s by default). A node
// that stalls (a long pause, a network partition) stops vouching by
// itself. What is left: a consumer leader change (a clustered stream)
// drops the pin at once, while the old node's messages are not due; but
// only a partition's owner pulls it (below), so the same node gets the
// pin back, unless two nodes' views of the nodes differ at that moment.
//
// Sharing the partitions. The server alone would not spread the work: it
// pins a partition to the pull at the head of its FIFO waiting queue, so
// the first node to pull would get every partition and keep them. So each
// node pulls only the partitions it owns by rendezvous hashing over the
// nodes it hears of: nodes announce themselves on the plain NATS subject
// _CALLFSM.webhook.<stream>.<Name>.nodes every PinnedTTL/6 (at most 5s),
// answer a newcomer at once, say goodbye on Shutdown and are forgotten
// after 3 silent periods. When the nodes change, the old owner of a
// partition stops pulling it and leaves what it held of it (but requests
// in flight, which finish) to expire; the new owner gets the pin PinnedTTL
// after the old one's last pull, so a partition that moves (a node joins,
// stops or dies) waits about PinnedTTL. While views differ, two nodes may
// pull one partition: the pin still lets one deliver it at a time.
//
// Shutdown stops pulling, lets the requests in progress finish (acked if
// delivered), and leaves everything else unacknowledged for the next
// owner. Dead letters are written to JetStreamConfig.DeadLetterPath on the
// node that gave up, in the same JSON Lines format: each node has its own
// file.
//
// # Metrics
//
// With Config.Registerer set, each Dispatcher registers:
//
//	callfsm_webhook_deliveries_total{url,result}    delivered | dead_lettered
//	callfsm_webhook_attempts_total{url}              requests made
//	callfsm_webhook_failures_total{url,reason}      network | status_5xx | status_408 | status_429 | status_4xx | status_3xx | status_other
//	callfsm_webhook_queue_depth{url}                 Pending(): read, not finished (≤ Window)
//	callfsm_webhook_cursor_lag{url}                  records in the log not yet finished (LastSeq + 1 - Cursor)
//	callfsm_webhook_delivery_latency_seconds{url}   append to 2xx (histogram)
//
// A JetStreamDispatcher registers the same, but cursor_lag (it has no
// cursor; the consumers' pending counts are in JetStream), and:
//
//	callfsm_webhook_queue_depth{url}                 Pending(): messages held, not finished
//	callfsm_webhook_partition_pinned{url,partition} 1 while this node delivers the partition
//	callfsm_webhook_redeliveries_total{url}          messages JetStream sent this node again
//	callfsm_webhook_nodes{url}                       nodes known, this one included
package webhook
