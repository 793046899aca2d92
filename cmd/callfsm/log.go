package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/callfsm/callfsm/emitter/eventlog/jetstream"
)

// logCmd exports the event log of a JetStream stream as JSON Lines:
// callfsm log --nats URL [--nats-creds FILE] [--stream NAME] [--from SEQ]
// [-o FILE].
type logCmd struct {
	stdout, stderr io.Writer
	nats           natsFlags
	from           uint64
	output         string

	// Hooks for tests; zero means the real thing.
	isTerminal func(io.Writer) bool
	now        func() time.Time
	batch      int // records a Read asks for; 0 means exportBatch
}

// exportBatch is how many records one Read asks for.
const exportBatch = 4096

func (c *logCmd) command() *ffcli.Command {
	fs := newFlagSet("log", c.stderr)
	c.nats.register(fs)
	fs.Uint64Var(&c.from, "from", 1, "export from sequence number `SEQ` on (the first event is 1)")
	fs.StringVar(&c.output, "o", "", "write the log to `FILE` (mode 0600, replaced whole once complete) instead of standard output")
	return &ffcli.Command{
		Name:       "log",
		ShortUsage: "callfsm log --nats URL [--nats-creds FILE] [--stream NAME] [--from SEQ] [-o FILE]",
		ShortHelp:  "export a JetStream event log as JSON Lines, for callfsm check",
		LongHelp: "Writes the events of the stream --stream on the NATS servers --nats as JSON\n" +
			"Lines, one event a line in stream order: the bytes the log stores, so that\n" +
			"`callfsm check` on the output checks the cluster's log. The export is a\n" +
			"snapshot: from --from to the stream's last event when the export starts, while\n" +
			"nodes go on appending. The stream is never created: a stream that does not\n" +
			"exist is an error. -o writes the file under a temporary name and renames it\n" +
			"into place at the end, so it is complete or absent. A one-line summary goes to\n" +
			"standard error. Every flag also reads a CALLFSM_* environment variable\n" +
			"(--nats-creds: CALLFSM_NATS_CREDS).\n\n" +
			"Exit status: 0 exported, 1 failed (no server, no such stream, interrupted),\n" +
			"2 usage error.",
		FlagSet: fs,
		Options: envOptions,
		Exec:    c.exec,
	}
}

func (c *logCmd) exec(ctx context.Context, args []string) error {
	if len(args) > 0 {
		return usagef("log takes no arguments, got %q", args)
	}
	if c.from == 0 {
		return usagef("--from 0: sequence numbers start at 1")
	}
	if err := c.nats.validate(); err != nil {
		return err
	}

	// The output first: a path that cannot be written fails before any
	// network work.
	var (
		w    io.Writer = c.stdout
		file *atomicFile
		dest = "standard output"
	)
	if c.output != "" && c.output != "-" {
		var err error
		if file, err = createAtomic(c.output); err != nil {
			return err
		}
		defer file.abort()
		w, dest = file, c.output
	}
	out := bufio.NewWriterSize(w, 64<<10)

	nc, err := c.nats.connect(ctx, "log", natsOneShot)
	if err != nil {
		return err
	}
	defer nc.Close()

	bar := c.progress()
	n, last, err := c.export(ctx, nc, out, bar)
	bar.clear()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("log export interrupted: %w", err)
		}
		return err
	}
	if err := out.Flush(); err != nil {
		return err
	}
	if file != nil {
		if err := file.commit(); err != nil {
			return err
		}
	}
	if n == 0 {
		fmt.Fprintf(c.stderr, "callfsm log: exported 0 events from stream %s (last seq %d) to %s\n", c.nats.stream, last, dest)
	} else {
		fmt.Fprintf(c.stderr, "callfsm log: exported %s (seq %d..%d) from stream %s to %s\n", plural(int(n), "event"), c.from, last, c.nats.stream, dest)
	}
	return nil
}

// export writes the records from c.from to the stream's last sequence when
// it starts, and returns how many it wrote and that last sequence.
func (c *logCmd) export(ctx context.Context, nc *nats.Conn, w io.Writer, bar *exportProgress) (n, last uint64, err error) {
	log, err := c.openLog(ctx, nc)
	if err != nil {
		return 0, 0, err
	}
	defer log.Close()
	last = log.LastSeq() // the snapshot: appends from now on are not exported
	batch := uint64(exportBatch)
	if c.batch > 0 {
		batch = uint64(c.batch)
	}
	var line []byte
	for seq := c.from; seq <= last; {
		recs, err := log.Read(ctx, seq, int(min(batch, last-seq+1)))
		if err != nil {
			return n, last, fmt.Errorf("stream %s: %w", c.nats.stream, err)
		}
		if len(recs) == 0 {
			// Direct gets may be answered by a replica that lags.
			return n, last, fmt.Errorf("stream %s: no event at seq %d, though the stream ended at seq %d when the export began (a lagging replica?); try again", c.nats.stream, seq, last)
		}
		for i := range recs {
			r := &recs[i]
			if r.Seq != seq {
				return n, last, fmt.Errorf("stream %s: got seq %d where %d was due: the stream has gaps and is not a callfsm event log", c.nats.stream, r.Seq, seq)
			}
			line = append(r.Event.AppendJSON(line[:0]), '\n')
			if _, err := w.Write(line); err != nil {
				return n, last, err
			}
			seq++
			n++
		}
		bar.update(seq-c.from, last-c.from+1)
	}
	return n, last, nil
}

// openLog opens the stream's Log without creating the stream. Open updates
// an existing stream to the Config it is given, so the Config is the
// stream's own: its subject prefix and replicas (Partitions 0 keeps the
// stream's count).
func (c *logCmd) openLog(ctx context.Context, nc *nats.Conn) (*jetstream.Log, error) {
	js, err := natsjs.New(nc, natsjs.WithDefaultTimeout(jetstream.DefaultTimeout))
	if err != nil {
		return nil, err
	}
	name, where := c.nats.stream, c.nats.servers()
	stream, err := js.Stream(ctx, name)
	if errors.Is(err, natsjs.ErrStreamNotFound) {
		return nil, fmt.Errorf("stream %s not found on %s", name, where)
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s on %s: %w", name, where, err)
	}
	cfg := stream.CachedInfo().Config
	if len(cfg.Subjects) != 1 || !strings.HasSuffix(cfg.Subjects[0], ".>") {
		return nil, fmt.Errorf("stream %s on %s holds subjects %q, not one PREFIX.>: not a callfsm event log", name, where, cfg.Subjects)
	}
	log, err := jetstream.Open(ctx, jetstream.Config{
		Conn: nc, Stream: name, Subjects: strings.TrimSuffix(cfg.Subjects[0], ".>"), Replicas: cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s on %s: %w", name, where, err)
	}
	return log, nil
}

// atomicFile is a file written under a temporary name in its directory
// and renamed into place by commit, so that the path holds either the old
// file or the whole new one. It is created 0600: events hold personal data.
type atomicFile struct {
	*os.File
	path string
	done bool
}

func createAtomic(path string) (*atomicFile, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o600); err != nil { // CreateTemp's mode, made explicit
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &atomicFile{File: f, path: path}, nil
}

// commit syncs the file and renames it into place.
func (a *atomicFile) commit() error {
	err := a.Sync()
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(a.Name(), a.path)
	}
	if err != nil {
		os.Remove(a.Name())
		a.done = true
		return err
	}
	a.done = true
	if dir, err := os.Open(filepath.Dir(a.path)); err == nil { // make the rename durable
		_ = dir.Sync()
		dir.Close()
	}
	return nil
}

// abort removes the file unless it was committed.
func (a *atomicFile) abort() {
	if a.done {
		return
	}
	a.done = true
	a.Close()
	os.Remove(a.Name())
}

// exportProgress shows the export's progress (see progressLine).
type exportProgress struct{ *progressLine }

func (c *logCmd) progress() *exportProgress {
	return &exportProgress{newProgressLine(c.stderr, c.isTerminal, c.now)}
}

func (p *exportProgress) update(done, total uint64) {
	if _, ok := p.due(); ok {
		p.show(fmt.Sprintf("exporting: %3.0f%% %d/%d events", 100*float64(done)/float64(total), done, total))
	}
}
