// Package prom writes metrics in the Prometheus text exposition format
// (version 0.0.4) without a client library: metric family headers,
// samples with escaped labels, and the one histogram every subsystem
// shares (HTTP requests, blob store calls, NBD requests, jobs). It owns
// the format, not what is measured: each subsystem keeps its own counters
// and writes them through this package at scrape time.
package prom

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Metric types of a family header.
const (
	Counter   = "counter"
	Gauge     = "gauge"
	Histogram = "histogram"
)

// Header writes the HELP and TYPE lines of a metric family.
func Header(w io.Writer, name, typ, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, escapeHelp(help), name, typ)
}

// Sample writes one sample: name{labels} value. labels are name, value
// pairs; an odd trailing name is ignored.
func Sample(w io.Writer, name string, v float64, labels ...string) {
	io.WriteString(w, name)
	writeLabels(w, labels, "", "")
	io.WriteString(w, " ")
	io.WriteString(w, FormatValue(v))
	io.WriteString(w, "\n")
}

// Family writes a header and a single unlabelled sample.
func Family(w io.Writer, name, typ, help string, v float64) {
	Header(w, name, typ, help)
	Sample(w, name, v)
}

// writeLabels writes {a="x",b="y"} (with an extra pair, e.g. le, when
// extraName is set), or nothing when there are no labels.
func writeLabels(w io.Writer, labels []string, extraName, extraValue string) {
	n := len(labels) / 2
	if n == 0 && extraName == "" {
		return
	}
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(labels[2*i])
		b.WriteString(`="`)
		b.WriteString(EscapeLabel(labels[2*i+1]))
		b.WriteByte('"')
	}
	if extraName != "" {
		if n > 0 {
			b.WriteByte(',')
		}
		b.WriteString(extraName)
		b.WriteString(`="`)
		b.WriteString(extraValue)
		b.WriteByte('"')
	}
	b.WriteByte('}')
	io.WriteString(w, b.String())
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

// EscapeLabel escapes a label value (backslash, double quote, newline).
func EscapeLabel(s string) string { return labelEscaper.Replace(s) }

var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

func escapeHelp(s string) string { return helpEscaper.Replace(s) }

// FormatValue formats a sample value as the exposition format wants it
// (+Inf, -Inf, NaN, or the shortest decimal form).
func FormatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
