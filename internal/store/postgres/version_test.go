package postgres

import (
	"errors"
	"testing"
)

// The store refuses a server without idle_session_timeout (PostgreSQL 13
// and older), which guards the locks it holds outside a transaction; the
// servers tests run against are newer and open (TestStalledWriterReleasesItsLocks).
func TestSupportedServer(t *testing.T) {
	for _, c := range []struct {
		version int
		ok      bool
	}{{90624, false}, {130016, false}, {139999, false}, {140000, true}, {150018, true}, {170002, true}} {
		err := supportedServer(c.version)
		if c.ok != (err == nil) {
			t.Errorf("version %d: err %v, want ok %v", c.version, err, c.ok)
		}
		if !c.ok && !errors.Is(err, ErrServerTooOld) {
			t.Errorf("version %d: err %v is not ErrServerTooOld", c.version, err)
		}
	}
	if err := supportedServer(130016); err == nil || err.Error() != "open postgres: server_version_num 130016: the PostgreSQL server is older than 14, the oldest Coffer runs on" {
		t.Errorf("message %q", err)
	}
}
