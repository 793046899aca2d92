// Package webhook delivers call events to HTTP receivers as Standard
// Webhooks (https://www.standardwebhooks.com), reading them from the event
// log.
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
package webhook
