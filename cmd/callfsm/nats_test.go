package main

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/emitter/eventlog/jetstream/jstest"
)

// startNATS starts an in-process NATS server with JetStream, shut down
// when the test ends. opts, if given, adds to its options (authorisation).
func startNATS(t *testing.T, opts ...func(*natsserver.Options)) *natsserver.Server {
	t.Helper()
	return jstest.RunServer(t, opts...)
}

// closedPort returns the address of a TCP port nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestNATSFlagsValidate(t *testing.T) {
	t.Parallel()
	creds := filepath.Join(t.TempDir(), "user.creds")
	require.NoError(t, os.WriteFile(creds, []byte("x"), 0o600))
	missing := filepath.Join(t.TempDir(), "nope.creds")
	tests := []struct {
		name  string
		flags natsFlags
		want  string // "" means valid
	}{
		{"one URL", natsFlags{url: "nats://127.0.0.1:4222", stream: "CALLFSM"}, ""},
		{"a cluster, no scheme, spaces", natsFlags{url: "tls://a:4222, b:4222 ,wss://c", stream: "S", creds: creds}, ""},
		{"no URL", natsFlags{stream: "CALLFSM"}, "--nats is required (or CALLFSM_NATS)"},
		{"blank URL", natsFlags{url: " , ", stream: "CALLFSM"}, "--nats is required"},
		{"bad scheme", natsFlags{url: "http://alice:s3cret@h:4222", stream: "S"}, `--nats http://h:4222: unknown scheme "http"`},
		{"unparsable", natsFlags{url: "nats://h:4222,nats://alice:s3cret@h:99999%", stream: "S"}, "--nats: URL 2 is not a valid URL"},
		{"no host", natsFlags{url: "nats://:4222", stream: "S"}, "--nats nats://:4222: no host"},
		{"missing creds", natsFlags{url: "nats://h", stream: "S", creds: missing}, "--nats-creds " + missing + ": no such file"},
		{"creds is a directory", natsFlags{url: "nats://h", stream: "S", creds: t.TempDir()}, "is a directory"},
		{"no stream", natsFlags{url: "nats://h"}, `--stream "": want a stream name`},
		{"dotted stream", natsFlags{url: "nats://h", stream: "a.b"}, `--stream "a.b": want a stream name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.flags.validate()
			if tt.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorAs(t, err, new(usageError), "exit 2")
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "s3cret")
		})
	}
}

func TestNATSServersRedacted(t *testing.T) {
	t.Parallel()
	n := natsFlags{url: "nats://alice:s3cret@h1:4222, t0ken@h2:4222,h3"}
	assert.Equal(t, "nats://h1:4222,nats://h2:4222,nats://h3", n.servers())
}

func TestNATSConnectOptions(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	for _, tt := range []struct {
		policy        natsReconnect
		retry         bool
		maxReconnects int
	}{
		{natsOneShot, false, 5},
		{natsStayConnected, true, -1},
	} {
		n := natsFlags{url: s.ClientURL(), stream: "CALLFSM"}
		nc, err := n.connect(context.Background(), "test", tt.policy)
		require.NoError(t, err)
		assert.True(t, nc.IsConnected())
		assert.Equal(t, "callfsm test", nc.Opts.Name)
		assert.Equal(t, tt.retry, nc.Opts.RetryOnFailedConnect)
		assert.Equal(t, tt.maxReconnects, nc.Opts.MaxReconnect)
		nc.Close()
	}
}

// A server that does not answer fails a one-shot connect at once, with
// the URL but not its password; a server's connection keeps trying.
func TestNATSConnectUnreachable(t *testing.T) {
	t.Parallel()
	addr := closedPort(t)
	n := natsFlags{url: "nats://alice:s3cret@" + addr, stream: "CALLFSM", timeout: 500 * time.Millisecond}
	start := time.Now()
	_, err := n.connect(context.Background(), "test", natsOneShot)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Equal(t, "connecting to NATS at nats://"+addr+": nats: no servers available for connection", err.Error())
	assert.ErrorIs(t, err, nats.ErrNoServers)

	nc, err := n.connect(context.Background(), "test", natsStayConnected)
	require.NoError(t, err)
	assert.Equal(t, nats.RECONNECTING, nc.Status())
	nc.Close()
}

func TestNATSConnectInterrupted(t *testing.T) {
	t.Parallel()
	s := startNATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n := natsFlags{url: s.ClientURL(), stream: "CALLFSM"}
	_, err := n.connect(ctx, "test", natsOneShot)
	assert.ErrorIs(t, err, context.Canceled)

	// A server's connection outlives the context it was made in.
	nc, err := n.connect(ctx, "test", natsStayConnected)
	require.NoError(t, err)
	assert.True(t, nc.IsConnected())
	nc.Close()
}

// Credentials reach the server: a user and password in the URL are
// checked by it, and kept out of the error; a credentials file is read.
func TestNATSConnectAuth(t *testing.T) {
	t.Parallel()
	s := startNATS(t, func(o *natsserver.Options) { o.Username, o.Password = "alice", "s3cret" })
	u, err := url.Parse(s.ClientURL())
	require.NoError(t, err)

	n := natsFlags{url: "nats://alice:s3cret@" + u.Host, stream: "CALLFSM"}
	nc, err := n.connect(context.Background(), "test", natsOneShot)
	require.NoError(t, err)
	nc.Close()

	n.url = "nats://alice:wr0ng@" + u.Host
	_, err = n.connect(context.Background(), "test", natsOneShot)
	require.Error(t, err)
	assert.ErrorIs(t, err, nats.ErrAuthorization)
	assert.Contains(t, err.Error(), "connecting to NATS at nats://"+u.Host+": ")
	assert.NotContains(t, err.Error(), "wr0ng")

	creds := filepath.Join(t.TempDir(), "user.creds")
	require.NoError(t, os.WriteFile(creds, []byte("not a credentials file\n"), 0o600))
	n = natsFlags{url: s.ClientURL(), stream: "CALLFSM", creds: creds}
	_, err = n.connect(context.Background(), "test", natsOneShot)
	require.Error(t, err)
	assert.False(t, errors.As(err, new(usageError)), "a server's refusal is not a usage error")
	assert.Contains(t, err.Error(), "connecting to NATS at "+s.ClientURL()+": ")
	assert.Contains(t, err.Error(), creds, "the file is read, and named")
}
