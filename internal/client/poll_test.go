package client_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"coffer/internal/client"
	"coffer/internal/clock"
)

// waitRecorder is a clock whose timers fire at once and which records the
// waits asked of it: the polling schedule, without waiting it out.
type waitRecorder struct {
	clock.Real
	waits []time.Duration
}

func (w *waitRecorder) NewTimer(d time.Duration) clock.Timer {
	w.waits = append(w.waits, d)
	return clock.NewFake(time.Time{}).NewTimer(0)
}

// TestPollSchedule: an operation and a job are polled first 20 ms after
// the start, then at doubling intervals up to the shorter of the client's
// PollInterval and the server's Retry-After — so a command returns soon
// after fast work ends (it used to wait a whole Retry-After second, or the
// 2 s poll interval, before its first look). A server stands in for
// Coffer here because only it can say "still running" exactly n times.
func TestPollSchedule(t *testing.T) {
	const running = 8
	var polls atomic.Int32
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("POST /start", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Azure-AsyncOperation", srv.URL+"/status")
		w.Header().Set("Location", srv.URL+"/result")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		if polls.Add(1) <= running {
			fmt.Fprint(w, `{"status":"InProgress"}`)
			return
		}
		fmt.Fprint(w, `{"status":"Succeeded"}`)
	})
	mux.HandleFunc("GET /result", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"jobId":"j"}`) })
	mux.HandleFunc("GET /subscriptions/s/resourceGroups/rg/providers/Microsoft.DataProtection/backupVaults/v/backupJobs/j", func(w http.ResponseWriter, r *http.Request) {
		status := "InProgress"
		if polls.Add(1) > running {
			status = "Completed"
		}
		fmt.Fprintf(w, `{"name":"j","properties":{"status":%q}}`, status)
	})
	srv = httptest.NewServer(mux)
	defer srv.Close()

	ms := time.Millisecond
	for _, tc := range []struct {
		name string
		max  time.Duration
		run  func(ctx context.Context, c *client.Client) error
		want []time.Duration
	}{
		{"operation", 2 * time.Second, func(ctx context.Context, c *client.Client) error {
			resp, err := c.Do(ctx, http.MethodPost, "/start", "1", nil, nil, nil)
			if err != nil {
				return err
			}
			body, err := c.Wait(ctx, resp, nil)
			if string(body) != `{"jobId":"j"}` {
				return fmt.Errorf("result %q (%v)", body, err)
			}
			return err
		}, []time.Duration{20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second}}, // Retry-After caps
		{"job", 500 * ms, func(ctx context.Context, c *client.Client) error {
			j, err := c.WaitJob(ctx, "rg", "v", "j", nil)
			if err == nil && j.Properties.Status != "Completed" {
				err = fmt.Errorf("job %+v", j)
			}
			return err
		}, []time.Duration{20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 500 * ms, 500 * ms, 500 * ms}}, // PollInterval caps
	} {
		t.Run(tc.name, func(t *testing.T) {
			polls.Store(0)
			rec := &waitRecorder{}
			c, err := client.New(client.Config{Endpoint: srv.URL, Subscription: "s"})
			if err != nil {
				t.Fatal(err)
			}
			c.Clock, c.PollInterval = rec, tc.max
			if err := tc.run(context.Background(), c); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rec.waits, tc.want) {
				t.Fatalf("waits %v, want %v", rec.waits, tc.want)
			}
		})
	}
}
