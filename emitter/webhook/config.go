package webhook

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callfsm/callfsm/emitter/eventlog"
)

// Config configures one Dispatcher: one receiver URL, one cursor. Zero
// values of the optional fields mean the defaults given beside them.
type Config struct {
	// URL is the receiver, http or https. Required. It is never followed
	// through redirects (a 3xx is a failure, as Standard Webhooks asks).
	URL string
	// Secret signs every delivery: "whsec_" + base64 of at least 24 bytes
	// (NewSecret makes one). Required: deliveries are never unsigned.
	Secret string
	// Log is where events come from; the Dispatcher tails it from the
	// cursor. Required.
	Log eventlog.Log
	// CursorPath is the file holding the cursor: the first Seq not yet
	// delivered or dead-lettered, in decimal. Absent means 1 (deliver the
	// whole log). It is replaced atomically (write a temporary file, then
	// rename). Required; one per URL.
	CursorPath string
	// DeadLetterPath is the JSON Lines file where events that could not be
	// delivered are appended, one object per event (see DeadLetter).
	// Created with mode 0600 (payloads hold personal data). Required.
	DeadLetterPath string

	// Parallel is how many calls are delivered at once. 0 means 8.
	Parallel int
	// Window is how many records the Dispatcher holds in memory at most:
	// those read from the log whose delivery has not finished, and those
	// finished behind an unfinished one. 0 means 1024. When it is full the
	// Dispatcher stops reading and the log absorbs the backlog; appends
	// never wait for a receiver.
	Window int
	// MaxAttempts is how many times one event is tried before it is
	// dead-lettered. 0 means 8.
	MaxAttempts int
	// BaseBackoff and MaxBackoff bound the wait before a retry: before
	// attempt n+1 a random duration in [0, min(MaxBackoff,
	// BaseBackoff·2^(n-1))] ("full jitter"), or the receiver's Retry-After
	// capped at MaxBackoff. 0 means 500ms and 1m.
	BaseBackoff, MaxBackoff time.Duration
	// Timeout bounds one request, from dialling to the end of the
	// response body. 0 means 10s.
	Timeout time.Duration
	// Client sends the requests. nil means a client of the Dispatcher's
	// own, with dial and TLS handshake timeouts, that does not follow
	// redirects and honours HTTPS_PROXY (for an egress proxy that filters
	// internal addresses); its idle connections are closed when Run
	// returns. A caller's client is used as is.
	Client *http.Client
	// Registerer receives the Dispatcher's metrics, labelled with the URL
	// (see the package doc), so that several Dispatchers share one
	// registry. nil means no metrics.
	Registerer prometheus.Registerer
	// Logger receives retries (Debug), dead letters (Warn) and local
	// failures such as an unwritable cursor file (Error). nil means none.
	Logger *slog.Logger
}

// The defaults of Config's zero values.
const (
	DefaultParallel    = 8
	DefaultWindow      = 1024
	DefaultMaxAttempts = 8
	DefaultBaseBackoff = 500 * time.Millisecond
	DefaultMaxBackoff  = time.Minute
	DefaultTimeout     = 10 * time.Second
)

// ErrConfig is the kind of every error New returns for a bad Config.
var ErrConfig = errors.New("webhook: invalid config")

// ConfigError names the field of a Config (or JetStreamConfig) that New
// (or NewJetStream) rejected, and why. It unwraps to ErrConfig and, where
// there is one, to the cause (ErrSecret for a bad Secret, a *fs.PathError
// for a cursor file that cannot be read).
type ConfigError struct {
	Field  string // e.g. "URL", "Secret", "Window"
	Reason string
	Err    error // the cause, or nil

	in string // the config type: "" means Config
}

// Error names the config type and field, and says what is wrong.
func (e *ConfigError) Error() string {
	in := e.in
	if in == "" {
		in = "Config"
	}
	if e.Err != nil {
		return fmt.Sprintf("webhook: %s.%s: %s: %v", in, e.Field, e.Reason, e.Err)
	}
	return fmt.Sprintf("webhook: %s.%s: %s", in, e.Field, e.Reason)
}

// Unwrap returns ErrConfig and the cause.
func (e *ConfigError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrConfig, e.Err}
	}
	return []error{ErrConfig}
}

func configErr(field, reason string, err error) *ConfigError {
	return &ConfigError{Field: field, Reason: reason, Err: err}
}

// endpoint is what Config and JetStreamConfig share: the receiver, how to
// deliver to it and where dead letters go. Its fields mean what the
// configs' fields of the same names mean.
type endpoint struct {
	URL, Secret, DeadLetterPath      string
	Parallel, MaxAttempts            int
	BaseBackoff, MaxBackoff, Timeout time.Duration
	Client                           *http.Client
	Logger                           *slog.Logger
}

// validate checks e and fills in its defaults. It returns the parsed
// secret and the URL as it may be shown (see redactURL).
func (e *endpoint) validate() (key []byte, name string, _ *ConfigError) {
	if e.URL == "" {
		return nil, "", configErr("URL", "required", nil)
	}
	u, err := url.Parse(e.URL)
	if err != nil {
		return nil, "", configErr("URL", "not a URL", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, "", configErr("URL", fmt.Sprintf("scheme %q, want http or https", u.Scheme), nil)
	}
	if u.Host == "" {
		return nil, "", configErr("URL", "no host", nil)
	}
	if e.Secret == "" {
		return nil, "", configErr("Secret", "required when URL is set (deliveries are always signed; make one with NewSecret)", nil)
	}
	key, err = parseSecret(e.Secret)
	if err != nil {
		return nil, "", configErr("Secret", "unusable", err)
	}
	if err := checkPath("DeadLetterPath", e.DeadLetterPath); err != nil {
		return nil, "", err
	}
	for _, n := range []struct {
		field string
		v     *int
		def   int
	}{
		{"Parallel", &e.Parallel, DefaultParallel},
		{"MaxAttempts", &e.MaxAttempts, DefaultMaxAttempts},
	} {
		if err := defaultInt(n.field, n.v, n.def); err != nil {
			return nil, "", err
		}
	}
	for _, d := range []struct {
		field string
		v     *time.Duration
		def   time.Duration
	}{
		{"BaseBackoff", &e.BaseBackoff, DefaultBaseBackoff},
		{"MaxBackoff", &e.MaxBackoff, DefaultMaxBackoff},
		{"Timeout", &e.Timeout, DefaultTimeout},
	} {
		if err := defaultDuration(d.field, d.v, d.def); err != nil {
			return nil, "", err
		}
	}
	if e.MaxBackoff < e.BaseBackoff {
		return nil, "", configErr("MaxBackoff", fmt.Sprintf("%v is less than BaseBackoff %v", e.MaxBackoff, e.BaseBackoff), nil)
	}
	if e.Logger == nil {
		e.Logger = slog.New(slog.DiscardHandler)
	}
	return key, redactURL(u), nil
}

// checkPath checks that path is set and its directory exists.
func checkPath(field, path string) *ConfigError {
	if path == "" {
		return configErr(field, "required", nil)
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil {
		return configErr(field, "its directory is unusable", err)
	} else if !fi.IsDir() {
		return configErr(field, dir+" is not a directory", nil)
	}
	return nil
}

// defaultInt rejects a negative *v and replaces 0 with def.
func defaultInt(field string, v *int, def int) *ConfigError {
	if *v < 0 {
		return configErr(field, fmt.Sprintf("%d is negative (0 means %d)", *v, def), nil)
	}
	if *v == 0 {
		*v = def
	}
	return nil
}

// defaultDuration rejects a negative *v and replaces 0 with def.
func defaultDuration(field string, v *time.Duration, def time.Duration) *ConfigError {
	if *v < 0 {
		return configErr(field, fmt.Sprintf("%v is negative (0 means %v)", *v, def), nil)
	}
	if *v == 0 {
		*v = def
	}
	return nil
}

// endpoint returns c's delivery settings.
func (c *Config) endpoint() endpoint {
	return endpoint{
		URL: c.URL, Secret: c.Secret, DeadLetterPath: c.DeadLetterPath,
		Parallel: c.Parallel, MaxAttempts: c.MaxAttempts,
		BaseBackoff: c.BaseBackoff, MaxBackoff: c.MaxBackoff, Timeout: c.Timeout,
		Client: c.Client, Logger: c.Logger,
	}
}

// validate checks c and returns a copy with the defaults filled in, its
// endpoint, the parsed secret and the URL as it may be shown.
func (c Config) validate() (Config, endpoint, []byte, string, error) {
	e := c.endpoint()
	key, name, cerr := e.validate()
	if cerr == nil && c.Log == nil {
		cerr = configErr("Log", "required", nil)
	}
	if cerr == nil {
		cerr = checkPath("CursorPath", c.CursorPath)
	}
	if cerr == nil && filepath.Clean(c.CursorPath) == filepath.Clean(c.DeadLetterPath) {
		cerr = configErr("DeadLetterPath", "same file as CursorPath", nil)
	}
	if cerr == nil {
		cerr = defaultInt("Window", &c.Window, DefaultWindow)
	}
	if cerr != nil {
		return c, e, nil, "", cerr
	}
	c.Parallel, c.MaxAttempts = e.Parallel, e.MaxAttempts
	c.BaseBackoff, c.MaxBackoff, c.Timeout = e.BaseBackoff, e.MaxBackoff, e.Timeout
	c.Logger = e.Logger
	return c, e, key, name, nil
}

// redactURL is the URL as shown in metrics, logs and dead letters: without
// its password, query and fragment, where receivers often carry tokens.
func redactURL(u *url.URL) string {
	v := *u
	v.RawQuery, v.ForceQuery, v.Fragment, v.RawFragment = "", false, "", ""
	return v.Redacted()
}

// newClient is the client used when Config.Client is nil.
func newClient(parallel int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 5 * time.Second
	t.MaxIdleConnsPerHost = parallel
	t.IdleConnTimeout = 90 * time.Second
	return &http.Client{
		Transport: t,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
