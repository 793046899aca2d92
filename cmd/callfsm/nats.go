package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
)

// natsFlags are the flags of a subcommand that reaches the event log on a
// NATS JetStream stream: --nats, --nats-creds and --stream (and, through
// envOptions, CALLFSM_NATS, CALLFSM_NATS_CREDS and CALLFSM_STREAM).
type natsFlags struct {
	url    string // --nats: server URLs, comma-separated
	creds  string // --nats-creds: a credentials file (user JWT and nkey seed)
	stream string // --stream: the stream's name

	// timeout bounds each attempt to reach a server (dial and handshake);
	// 0 means defaultNATSTimeout. Tests shorten it.
	timeout time.Duration
}

// defaultNATSTimeout bounds one attempt to reach a NATS server.
const defaultNATSTimeout = 5 * time.Second

// natsReconnect says how a connection copes with servers going away.
type natsReconnect int

const (
	// natsOneShot suits a command that runs and exits (log): the first
	// connect fails at once if no server answers, and a connection lost
	// later is retried a few times only.
	natsOneShot natsReconnect = iota
	// natsStayConnected suits a server (serve): a first connect that fails
	// returns a connection still trying, and a lost connection is retried
	// for ever. The caller watches Status or IsConnected.
	natsStayConnected
)

// register adds the flags to fs.
func (n *natsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.url, "nats", "", "NATS server `URL`s, comma-separated: nats://[USER:PASSWORD@]HOST:PORT (or tls://, ws://, wss://)")
	fs.StringVar(&n.creds, "nats-creds", "", "NATS credentials `FILE` (a user JWT and its nkey seed)")
	fs.StringVar(&n.stream, "stream", jetstream.DefaultStream, "`NAME` of the JetStream stream holding the event log")
}

// validate checks the flags without touching the network. Its errors are
// usage errors (exit 2).
func (n *natsFlags) validate() error {
	urls := natsURLs(n.url)
	if len(urls) == 0 {
		return usagef("--nats is required (or CALLFSM_NATS): the URL of a NATS server")
	}
	for i, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			return usagef("--nats: URL %d is not a valid URL (want nats://[USER:PASSWORD@]HOST:PORT)", i+1)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return usagef("--nats %s: unknown scheme %q (want nats, tls, ws or wss)", redact(raw), u.Scheme)
		}
		if u.Hostname() == "" {
			return usagef("--nats %s: no host", redact(raw))
		}
	}
	if n.creds != "" {
		st, err := os.Stat(n.creds)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return usagef("--nats-creds %s: no such file", n.creds)
		case err != nil:
			return usagef("--nats-creds %s: %v", n.creds, errors.Unwrap(err))
		case st.IsDir():
			return usagef("--nats-creds %s: is a directory, not a credentials file", n.creds)
		}
	}
	// NATS's own rule for stream names, checked here to fail before
	// connecting.
	if n.stream == "" || strings.ContainsAny(n.stream, ".*> \t\r\n/\\") {
		return usagef("--stream %q: want a stream name (no spaces, '.', '*', '>', '/' or '\\')", n.stream)
	}
	return nil
}

// servers returns --nats fit for messages: user names, passwords and
// tokens removed.
func (n *natsFlags) servers() string {
	urls := natsURLs(n.url)
	for i, u := range urls {
		urls[i] = redact(u)
	}
	return strings.Join(urls, ",")
}

// natsURLs splits a --nats value as nats.Connect does, giving each URL
// the nats:// scheme nats.Connect assumes when it has none (and without
// which "user:pass@host" would parse with "user" as its scheme).
func natsURLs(list string) []string {
	var urls []string
	for _, u := range strings.Split(list, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		urls = append(urls, u)
	}
	return urls
}

// connect validates the flags and connects to NATS as "callfsm <cmd>".
// Dialling stops when ctx is done (for natsOneShot; a natsStayConnected
// connection outlives ctx and is closed by its owner). extra options come
// after the flags' own, so a caller may add handlers or override one.
func (n *natsFlags) connect(ctx context.Context, cmd string, policy natsReconnect, extra ...nats.Option) (*nats.Conn, error) {
	if err := n.validate(); err != nil {
		return nil, err
	}
	timeout := n.timeout
	if timeout <= 0 {
		timeout = defaultNATSTimeout
	}
	dialCtx := ctx
	if policy == natsStayConnected {
		dialCtx = context.WithoutCancel(ctx) // reconnects outlive the first connect
	}
	opts := []nats.Option{
		nats.Name("callfsm " + cmd),
		nats.Timeout(timeout),
		nats.SetCustomDialer(ctxDialer{ctx: dialCtx, d: net.Dialer{Timeout: timeout}}),
	}
	if n.creds != "" {
		opts = append(opts, nats.UserCredentials(n.creds))
	}
	switch policy {
	case natsOneShot:
		opts = append(opts, nats.RetryOnFailedConnect(false), nats.MaxReconnects(5), nats.ReconnectWait(time.Second))
	case natsStayConnected:
		opts = append(opts, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(2*time.Second))
	default:
		return nil, fmt.Errorf("nats: unknown reconnect policy %d", policy)
	}
	nc, err := nats.Connect(n.url, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", n.servers(), err)
	}
	return nc, nil
}

// ctxDialer dials TCP until ctx is done, so that an interrupt ends a
// connect at once.
type ctxDialer struct {
	ctx context.Context
	d   net.Dialer
}

func (c ctxDialer) Dial(network, address string) (net.Conn, error) {
	return c.d.DialContext(c.ctx, network, address)
}
