package webhook

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// readCursor returns the cursor stored at path: 1 when the file does not
// exist.
func readCursor(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 1, nil
	}
	if err != nil {
		return 0, err
	}
	text := strings.TrimSpace(string(b))
	n, err := strconv.ParseUint(text, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s holds %q, want a sequence number ≥ 1", path, text)
	}
	return n, nil
}

// writeCursor replaces the file at path with n, durably: it writes a
// temporary file beside it, syncs it, renames it over path and syncs the
// directory, so a crash leaves the old cursor or the new one, never a torn
// one.
func writeCursor(path string, n uint64) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(strconv.AppendUint(nil, n, 10))
	if err == nil {
		_, err = f.Write([]byte{'\n'})
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	// Sync the directory so that the rename itself survives a crash. Some
	// file systems cannot; the rename is done either way.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
