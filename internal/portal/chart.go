package portal

import (
	"fmt"
	"math"
)

// chart is a bar chart drawn as SVG on the server (no script): bars in a
// plot area with a few horizontal grid lines, labelled on the left, and
// some x labels.
type chart struct {
	Title         string
	Width, Height float64
	Left, Bottom  float64 // the plot area's left edge and baseline
	Right, Top    float64
	Bars          []chartBar
	Grid          []chartTick
	XLabels       []chartTick
	Empty         string
}

type chartBar struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

type chartTick struct {
	X, Y  float64
	Label string
}

// chartValue is one bar's value.
type chartValue struct {
	Label string // x label ("" for none)
	Value float64
	Class string
	Title string // tooltip
}

// newChart lays out values as bars, scaling the y axis to a round maximum
// (round in powers of 1024 when binary) and labelling it with format.
func newChart(title string, values []chartValue, binary bool, format func(float64) string, empty string) chart {
	c := chart{Title: title, Width: 560, Height: 200, Left: 64, Bottom: 172, Right: 552, Top: 12, Empty: empty}
	maxV := 0.0
	for _, v := range values {
		maxV = math.Max(maxV, v.Value)
	}
	if len(values) == 0 || maxV == 0 {
		return c
	}
	unit := 1.0
	if binary {
		for unit*1024 <= maxV {
			unit *= 1024
		}
	}
	top := niceCeil(maxV/unit) * unit
	plotH, plotW := c.Bottom-c.Top, c.Right-c.Left
	for i := 0; i <= 4; i++ {
		v := top * float64(i) / 4
		c.Grid = append(c.Grid, chartTick{X: c.Left - 6, Y: c.Bottom - plotH*float64(i)/4, Label: format(v)})
	}
	slot := plotW / float64(len(values))
	w := math.Max(1, math.Min(slot*0.7, 28))
	every := int(math.Ceil(float64(len(values)) / 7))
	last := ""
	for i, v := range values {
		h := plotH * v.Value / top
		x := c.Left + slot*float64(i) + (slot-w)/2
		c.Bars = append(c.Bars, chartBar{X: round1(x), Y: round1(c.Bottom - h), W: round1(w), H: round1(h), Class: v.Class, Title: v.Title})
		if v.Label != "" && v.Label != last && i%every == 0 {
			last = v.Label
			c.XLabels = append(c.XLabels, chartTick{X: round1(x + w/2), Y: c.Bottom + 16, Label: v.Label})
		}
	}
	return c
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

// niceCeil rounds v up to 1, 2, 2.5 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func formatSeconds(v float64) string {
	switch {
	case v >= 3600:
		return fmt.Sprintf("%.1f h", v/3600)
	case v >= 60:
		return fmt.Sprintf("%.0f min", v/60)
	case v >= 10 || v == 0:
		return fmt.Sprintf("%.0f s", v)
	}
	return fmt.Sprintf("%.2g s", v)
}

func formatChartBytes(v float64) string { return formatBytes(int64(v)) }
