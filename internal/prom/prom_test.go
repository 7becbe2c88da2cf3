package prom

import (
	"strings"
	"sync"
	"testing"
)

func TestHistogramAndParse(t *testing.T) {
	h := NewHist([]float64{0.1, 1})
	for _, v := range []float64{0.05, 0.1, 0.5, 2, 3} {
		h.Observe(v)
	}
	var b strings.Builder
	Header(&b, "x_seconds", Histogram, "A test\nhistogram.")
	h.Write(&b, "x_seconds", "op", `a"b\c`+"\n")
	Header(&b, "y_total", Counter, "A counter.")
	Sample(&b, "y_total", 7)
	ex, err := Parse(strings.NewReader(b.String()))
	if err != nil {
		t.Fatalf("parse:\n%s\n%v", b.String(), err)
	}
	lbl := `a"b\c` + "\n"
	for _, c := range []struct {
		name string
		le   string
		want float64
	}{
		{"x_seconds_bucket", "0.1", 2}, {"x_seconds_bucket", "1", 3}, {"x_seconds_bucket", "+Inf", 5},
		{"x_seconds_count", "", 5}, {"x_seconds_sum", "", 5.65},
	} {
		labels := []string{"op", lbl}
		if c.le != "" {
			labels = append(labels, "le", c.le)
		}
		got, ok := ex.Get(c.name, labels...)
		if !ok || got != c.want {
			t.Errorf("%s le=%s = %v (%v), want %v\n%s", c.name, c.le, got, ok, c.want, b.String())
		}
	}
	if v, _ := ex.Get("y_total"); v != 7 {
		t.Errorf("y_total = %v", v)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, in := range []string{
		"x 1\n",                                 // no TYPE
		"# TYPE x counter\nx 1\n",               // counter without _total
		"# TYPE x gauge\n# TYPE x gauge\nx 1\n", // TYPE twice
		"# TYPE x gauge\nx{a=\"b} 1\n",          // unterminated
		"# TYPE x gauge\nx{1a=\"b\"} 1\n",       // bad label name
		"# TYPE x gauge\nx one\n",               // bad value
		"# TYPE x-y gauge\nx-y 1\n",             // bad name
	} {
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("Parse(%q) succeeded", in)
		}
	}
}

func TestHistogramConcurrent(t *testing.T) {
	h := NewHist(LatencyBuckets)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				h.Observe(0.002)
			}
		}()
	}
	wg.Wait()
	if h.Count() != 8000 {
		t.Fatalf("count %d", h.Count())
	}
	if s := h.Sum(); s < 15.99 || s > 16.01 {
		t.Fatalf("sum %v", s)
	}
}
