package docs

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/callfsm/callfsm/call"
	"github.com/callfsm/callfsm/call/event"
	"github.com/callfsm/callfsm/call/httpapi"
	"github.com/callfsm/callfsm/emitter/eventlog"
	"github.com/callfsm/callfsm/emitter/webhook"
	"github.com/callfsm/callfsm/timeout"
)

// serve.md is written by hand from runs of the real binary. These tests
// keep it true: its anchors, its flags and metrics, its webhook example and
// the answers of its ```console blocks, replayed against a real API.

const serveDoc = "serve.md"

func readServeDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(serveDoc)
	require.NoError(t, err)
	return string(b)
}

// fence is one fenced code block of a markdown document.
type fence struct {
	lang   string
	body   string
	before string // the last non-blank line before the opening fence
}

// docStructure returns the slugs of a document's headings, as GitHub makes
// its anchors, and its fenced blocks.
func docStructure(doc string) (anchors map[string]int, fences []fence) {
	anchors = make(map[string]int)
	var (
		in   *fence
		body []string
		last string
	)
	for line := range strings.SplitSeq(doc, "\n") {
		if in != nil {
			if strings.TrimSpace(line) == "```" {
				in.body = strings.Join(body, "\n")
				fences = append(fences, *in)
				in, body = nil, nil
				continue
			}
			body = append(body, line)
			continue
		}
		if lang, ok := strings.CutPrefix(line, "```"); ok {
			in = &fence{lang: strings.TrimSpace(lang), before: last}
			continue
		}
		if strings.TrimSpace(line) != "" {
			last = strings.TrimSpace(line)
		}
		if text, ok := strings.CutPrefix(line, "#"); ok {
			text = strings.TrimLeft(text, "#")
			if strings.HasPrefix(text, " ") {
				slug := githubSlug(text)
				if n := anchors[slug]; n > 0 {
					anchors[slug+"-"+strconv.Itoa(n)]++
				}
				anchors[slug]++
			}
		}
	}
	return anchors, fences
}

// githubSlug is GitHub's anchor for a heading: lower case, spaces as
// hyphens, and every other character but letters, digits, '_' and '-' left
// out (the backticks of code spans included).
func githubSlug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '_', r == '-':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// The problem types' URIs point into serve.md: each must land on exactly
// one heading, and every link inside the page must land somewhere.
func TestServeDocAnchors(t *testing.T) {
	doc := readServeDoc(t)
	anchors, _ := docStructure(doc)
	for _, typ := range []string{
		httpapi.TypeInvalidRequest, httpapi.TypeUnknownCall, httpapi.TypeCallExists,
		httpapi.TypeIllegalTransition, httpapi.TypeCallEnded, httpapi.TypeUnavailable,
	} {
		u, err := url.Parse(typ)
		require.NoError(t, err)
		require.True(t, strings.HasSuffix(u.Path, "/docs/serve.md"), "%s does not point at docs/serve.md", typ)
		require.Equal(t, 1, anchors[u.Fragment], "%s: want exactly one heading with anchor #%s", typ, u.Fragment)
	}
	for _, m := range regexp.MustCompile(`\]\(#([^)]+)\)`).FindAllStringSubmatch(doc, -1) {
		require.Contains(t, anchors, m[1], "link to #%s: no such heading", m[1])
	}
}

// Every flag of cmd/callfsm/serve.go is in the flags table, with its
// environment variable.
func TestServeDocFlags(t *testing.T) {
	doc := readServeDoc(t)
	src, err := os.ReadFile(filepath.Join("..", "cmd", "callfsm", "serve.go"))
	require.NoError(t, err)
	flags := regexp.MustCompile(`fs\.\w*Var\(&s\.\w+, "([a-z-]+)"`).FindAllStringSubmatch(string(src), -1)
	require.NotEmpty(t, flags)
	for _, f := range flags {
		name := f[1]
		env := "CALLFSM_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		row := regexp.MustCompile("(?m)^\\| `--" + regexp.QuoteMeta(name) + "[ `].*\\| `" + env + "` \\|")
		require.Regexp(t, row, doc, "flag --%s (%s) is not in the flags table", name, env)
	}
}

// The metrics table lists exactly the metrics serve registers, with their
// labels.
func TestServeDocMetrics(t *testing.T) {
	doc := readServeDoc(t)
	documented := make(map[string][]string) // name → labels
	row := regexp.MustCompile("(?m)^\\| `(callfsm_\\w+)` \\| \\w+ \\|([^|]*)\\|")
	parens := regexp.MustCompile(`\([^)]*\)`)
	code := regexp.MustCompile("`(\\w+)`")
	for _, m := range row.FindAllStringSubmatch(doc, -1) {
		labels := []string{}
		for _, l := range code.FindAllStringSubmatch(parens.ReplaceAllString(m[2], ""), -1) {
			labels = append(labels, l[1])
		}
		sort.Strings(labels)
		documented[m[1]] = labels
	}

	// The metrics of the API and of one webhook dispatcher, registered as
	// serve registers them, with a call made so that every family has a
	// series to show its labels.
	reg := prometheus.NewRegistry()
	rig := newDocRig(t, "", reg)
	rig.do(t, http.MethodPost, "/v1/calls", http.Header{}, `{"call_id":1,"user_id":2}`, 0)
	rig.do(t, http.MethodGet, "/v1/calls/1", http.Header{}, "", 0) // waits for the history to count it
	d, err := webhook.New(webhook.Config{
		URL: "http://127.0.0.1:1/hooks", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Log: rig.log,
		CursorPath: filepath.Join(t.TempDir(), "c"), DeadLetterPath: filepath.Join(t.TempDir(), "d"),
		Registerer: reg,
	})
	require.NoError(t, err)
	require.NoError(t, d.Shutdown(context.Background()))
	// callfsm_timeouts_fired_total is registered by cmd/callfsm/serve.go
	// itself, over Engine.TimeoutsFired.
	registered := map[string][]string{"callfsm_timeouts_fired_total": {}}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		labels := map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = true
			}
		}
		sorted := []string{}
		for l := range labels {
			sorted = append(sorted, l)
		}
		sort.Strings(sorted)
		registered[mf.GetName()] = sorted
	}
	require.Equal(t, registered, documented, "the metrics table of serve.md and the metrics registered differ")
}

// The delivery shown in serve.md verifies with its secret, and the Go
// receiver shown there is this file's hooks, and works.
func TestServeDocWebhook(t *testing.T) {
	doc := readServeDoc(t)
	secret := regexp.MustCompile(`whsec_[A-Za-z0-9+/]{20,}=*`).FindString(doc)
	require.NotEmpty(t, secret, "no whsec_ secret in serve.md")
	_, fences := docStructure(doc)

	var delivery, receiver string
	for _, f := range fences {
		switch {
		case f.lang == "http" && strings.HasPrefix(f.body, "POST "):
			delivery = f.body
		case f.lang == "go" && strings.Contains(f.body, "webhook.Verify"):
			receiver = f.body
		}
	}
	require.NotEmpty(t, delivery, "no ```http block with a delivery")
	head, body, ok := strings.Cut(delivery, "\n\n")
	require.True(t, ok)
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(strings.ReplaceAll(head, "\n", "\r\n") + "\r\n\r\n")))
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(len(body)), req.Header.Get("Content-Length"))
	ts, err := strconv.ParseInt(req.Header.Get(webhook.HeaderTimestamp), 10, 64)
	require.NoError(t, err)
	require.NoError(t, webhook.Verify(secret, req.Header, []byte(body), 0, time.Unix(ts, 0)))
	ev, err := event.Decode([]byte(body))
	require.NoError(t, err)
	require.Equal(t, string(ev.AppendJSON(nil)), body, "the delivered body is the event's encoding")

	src, err := os.ReadFile("serve_test.go")
	require.NoError(t, err)
	require.NotEmpty(t, receiver, "no ```go block calling webhook.Verify")
	require.Contains(t, string(src), receiver, "the receiver in serve.md is not hooks in serve_test.go")

	handled := make(chan string, 2)
	srv := httptest.NewServer(hooks(secret, func(id string, ev event.Event) { handled <- id + " " + ev.Event }))
	defer srv.Close()
	post := func(payload string, signed []byte) int {
		t.Helper()
		now := time.Now()
		sig, err := webhook.Sign(secret, "evt_2", now, signed)
		require.NoError(t, err)
		req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(payload))
		require.NoError(t, err)
		req.Header.Set(webhook.HeaderID, "evt_2")
		req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
		req.Header.Set(webhook.HeaderSignature, sig)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusNoContent, post(body, []byte(body)))
	require.Equal(t, http.StatusUnauthorized, post(strings.Replace(body, "ringing", "accepted", 1), []byte(body)))
	close(handled)
	var got []string
	for h := range handled {
		got = append(got, h)
	}
	require.Equal(t, []string{"evt_2 popin_outgoing_call_ringing"}, got)
}

// hooks receives callfsm's webhooks.
func hooks(secret string, handle func(id string, ev event.Event)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		// On the raw bytes, before decoding; tolerance 0 means 5 minutes.
		if err := webhook.Verify(secret, r.Header, body, 0, time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized) // a 4xx: not retried
			return
		}
		ev, err := event.Decode(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// webhook-id is the same on every retry: a duplicate has the id of
		// an event already handled.
		handle(r.Header.Get(webhook.HeaderID), ev)
		w.WriteHeader(http.StatusNoContent) // any 2xx acknowledges
	}
}

// docRig is the API as serve wires it (engine → file event log → API),
// on a virtual clock so that no timeout fires while a transcript runs.
type docRig struct {
	log *eventlog.File
	srv *httptest.Server
}

func newDocRig(t *testing.T, token string, reg *prometheus.Registry) *docRig {
	t.Helper()
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))
	log, err := eventlog.OpenFile(filepath.Join(t.TempDir(), "events.jsonl"), eventlog.FileConfig{Logger: logger})
	require.NoError(t, err)
	clock := timeout.NewVirtual(time.Unix(1796022411, 0))
	eng, err := call.New(call.Config{Clock: clock, Emitter: eventlog.AsEmitter(log)})
	require.NoError(t, err)
	api, err := httpapi.New(httpapi.Config{Engine: eng, Log: log, Token: token, Registerer: reg, Logger: logger, Now: clock.Now})
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- api.Run(context.Background()) }()
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		require.NoError(t, api.Close())
		srv.Close()
		require.NoError(t, <-runErr)
		require.NoError(t, eng.Close())
		require.NoError(t, log.Close())
	})
	// /readyz answers 200 once Run has replayed the (empty) log: poll a
	// server that is starting, as a client would.
	require.Eventually(t, func() bool {
		resp, err := srv.Client().Get(srv.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, time.Millisecond)
	return &docRig{log: log, srv: srv}
}

// do sends a request and returns what `curl -s [-i]` prints, without the
// final newlines. A positive maxTime ends the request after it, as curl's
// --max-time does, keeping what arrived.
func (r *docRig) do(t *testing.T, method, path string, h http.Header, body string, maxTime time.Duration, withHeaders ...bool) string {
	t.Helper()
	ctx := context.Background()
	if maxTime > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, maxTime)
		defer cancel()
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.srv.URL+path, rd)
	require.NoError(t, err)
	for k, v := range h {
		req.Header[k] = v
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // curl -d
	}
	resp, err := r.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if maxTime <= 0 || !errors.Is(err, context.DeadlineExceeded) {
		require.NoError(t, err)
	}
	var out strings.Builder
	if len(withHeaders) > 0 && withHeaders[0] {
		out.WriteString(resp.Proto + " " + resp.Status + "\n")
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range resp.Header {
				if k != "Date" && k != "Content-Length" && !yield(k) {
					return
				}
			}
		})
		for _, k := range keys {
			for _, v := range resp.Header[k] {
				out.WriteString(k + ": " + v + "\n")
			}
		}
		out.WriteString("Date: …\n")
		if slices.Contains(resp.TransferEncoding, "chunked") {
			out.WriteString("Transfer-Encoding: chunked\n")
		} else {
			out.WriteString("Content-Length: " + strconv.Itoa(len(got)) + "\n")
		}
		out.WriteString("\n")
	}
	out.Write(got)
	return strings.TrimRight(out.String(), "\n")
}

// A command of a ```console block and the output the document shows for it.
type transcriptStep struct {
	cmd, want string
}

// transcript splits a ```console block into commands and their outputs.
// A command starts with "$ " and goes on while a quote is open or a line
// ends with a backslash.
func transcript(t *testing.T, block string) []transcriptStep {
	t.Helper()
	var steps []transcriptStep
	lines := strings.Split(block, "\n")
	for i := 0; i < len(lines); {
		cmd, ok := strings.CutPrefix(lines[i], "$ ")
		require.True(t, ok, "want a command, got %q", lines[i])
		i++
		for !commandComplete(cmd) {
			require.Less(t, i, len(lines), "command never ends: %s", cmd)
			cmd += "\n" + lines[i]
			i++
		}
		var out []string
		for i < len(lines) && !strings.HasPrefix(lines[i], "$ ") {
			out = append(out, lines[i])
			i++
		}
		steps = append(steps, transcriptStep{cmd: cmd, want: strings.Join(out, "\n")})
	}
	return steps
}

func commandComplete(cmd string) bool {
	if strings.HasSuffix(cmd, "\\") {
		return false
	}
	_, err := shellWords(cmd)
	return err == nil
}

// shellWords splits a command as sh does, for the quoting used in the
// document: single and double quotes (with \" and \\ inside double quotes)
// and backslash-newline.
func shellWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // in a word
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && s[i+1] == '\n':
			i++
		case c == ' ' || c == '\n' || c == '\t':
			if in {
				words, in = append(words, cur.String()), false
				cur.Reset()
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("open single quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i, in = i+1+j, true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, errors.New("open double quote")
			}
			in = true
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// run sends what a curl command of the document asks for and returns what
// curl prints.
func (r *docRig) run(t *testing.T, cmd string) string {
	t.Helper()
	args, err := shellWords(cmd)
	require.NoError(t, err)
	require.Equal(t, "curl", args[0], "only curl commands are replayed: %s", cmd)
	var (
		method, body, target string
		headers              = http.Header{}
		withHeaders          bool
		maxTime              time.Duration
	)
	for i := 1; i < len(args); i++ {
		switch a := args[i]; a {
		case "-s", "-N":
		case "-i":
			withHeaders = true
		case "-X", "-d", "-H", "--max-time":
			require.Less(t, i+1, len(args), "%s needs a value: %s", a, cmd)
			i++
			switch v := args[i]; a {
			case "-X":
				method = v
			case "-d":
				body = v
			case "-H":
				k, val, ok := strings.Cut(v, ":")
				require.True(t, ok, "bad header %q", v)
				headers.Add(k, strings.TrimSpace(val))
			case "--max-time":
				secs, err := strconv.Atoi(v)
				require.NoError(t, err)
				maxTime = time.Duration(secs) * time.Second
			}
		default:
			require.True(t, strings.HasPrefix(a, "localhost:18181/"), "unknown curl argument %q in: %s", a, cmd)
			target = strings.TrimPrefix(a, "localhost:18181")
		}
	}
	require.NotEmpty(t, target, "no URL in: %s", cmd)
	if method == "" {
		method = http.MethodGet
		if body != "" {
			method = http.MethodPost
		}
	}
	return r.do(t, method, target, headers, body, maxTime, withHeaders)
}

var (
	uuidRE      = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	timestampRE = regexp.MustCompile(`"timestamp":\d+`)
	dateRE      = regexp.MustCompile(`(?m)^Date: .*$`)
)

// normalise blanks what differs from run to run: session ids made by the
// engine, timestamps, Date headers.
func normalise(s string) string {
	s = uuidRE.ReplaceAllString(s, "<uuid>")
	s = timestampRE.ReplaceAllString(s, `"timestamp":<ts>`)
	return dateRE.ReplaceAllString(s, "Date: …")
}

// globMatch reports whether s is pattern, each "…" of which stands for any
// text.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "…")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// Every ```console block of serve.md, replayed in order against one API (a
// block after "<!-- serve_test: --token T -->" against its own API with
// that token), prints what the document shows.
func TestServeDocTranscript(t *testing.T) {
	doc := readServeDoc(t)
	_, fences := docStructure(doc)
	main := newDocRig(t, "", nil)
	blocks := 0
	for _, f := range fences {
		if f.lang != "console" {
			continue
		}
		blocks++
		rig := main
		if args, ok := strings.CutPrefix(f.before, "<!-- serve_test: "); ok {
			token, ok := strings.CutPrefix(strings.TrimSuffix(args, " -->"), "--token ")
			require.True(t, ok, "unknown serve_test directive %q", f.before)
			rig = newDocRig(t, token, nil)
		}
		for _, step := range transcript(t, f.body) {
			got := normalise(rig.run(t, step.cmd))
			want := normalise(step.want)
			if !globMatch(want, got) {
				t.Errorf("serve.md: $ %s\nthe document shows:\n%s\nthe API prints:\n%s", step.cmd, want, got)
			}
		}
	}
	require.Greater(t, blocks, 10, "serve.md has too few ```console blocks: is the parser broken?")
}
