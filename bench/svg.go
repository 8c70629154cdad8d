package bench

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
)

// Plot geometry, in SVG user units.
const (
	svgLeft      = 80  // room for the y-axis labels
	svgRight     = 20  //
	svgGroupW    = 110 // width per scenario
	svgBarW      = 36
	svgPanelH    = 260 // plotting height of one panel
	svgPanelTop  = 70  // title and legend above the first panel
	svgPanelGap  = 130 // scenario labels and the next title between panels
	svgColorA    = "#4e79a7"
	svgColorB    = "#f28e2b"
	svgYTicks    = 5
	svgLabelFont = 11
)

// WriteCompareSVG draws the comparison as two panels of grouped bars, A
// against B per scenario: the median rate, then the median p99 latency,
// with axis ticks, value labels and a legend naming the brokers.
func WriteCompareSVG(w io.Writer, cr *CompareResult) error {
	n := max(len(cr.Rows), 1)
	width := svgLeft + n*svgGroupW + svgRight
	width = max(width, 560)
	height := svgPanelTop + 2*svgPanelH + svgPanelGap + 110
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif">`+"\n",
		width, height, width, height)
	fmt.Fprintf(bw, `<rect x="0" y="0" width="%d" height="%d" fill="white"/>`+"\n", width, height)

	// Legend.
	fmt.Fprintf(bw, `<rect x="%d" y="12" width="14" height="14" fill="%s"/>`, svgLeft, svgColorA)
	svgText(bw, svgLeft+20, 24, "start", 12, "", "A: "+cr.A)
	fmt.Fprintf(bw, `<rect x="%d" y="34" width="14" height="14" fill="%s"/>`, svgLeft, svgColorB)
	svgText(bw, svgLeft+20, 46, "start", 12, "", "B: "+cr.B)

	rate := func(r CompareRow) (float64, float64) { return r.ARate, r.BRate }
	p99 := func(r CompareRow) (float64, float64) { return r.AP99Median, r.BP99Median }
	top := svgPanelTop + 20
	svgPanel(bw, cr, top, fmt.Sprintf("Throughput, msg/s (median of %d rounds)", cr.Rounds), rate)
	top += svgPanelH + svgPanelGap
	svgPanel(bw, cr, top, fmt.Sprintf("p99 latency, ms (median of %d rounds)", cr.Rounds), p99)
	fmt.Fprintln(bw, "</svg>")
	return bw.Flush()
}

func svgPanel(w *bufio.Writer, cr *CompareResult, top int, title string, values func(CompareRow) (float64, float64)) {
	svgText(w, svgLeft, top-10, "start", 14, "bold", title)
	var hi float64
	for _, r := range cr.Rows {
		a, b := values(r)
		hi = max(hi, a, b)
	}
	scaleMax := niceCeil(hi)
	bottom := top + svgPanelH
	right := svgLeft + max(len(cr.Rows), 1)*svgGroupW
	// Grid and y-axis labels.
	for i := 0; i <= svgYTicks; i++ {
		v := scaleMax * float64(i) / svgYTicks
		y := bottom - int(math.Round(float64(svgPanelH)*float64(i)/svgYTicks))
		fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#ddd"/>`+"\n", svgLeft, y, right, y)
		svgText(w, svgLeft-6, y+4, "end", svgLabelFont, "", shortNumber(v))
	}
	fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", svgLeft, top, svgLeft, bottom)
	fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", svgLeft, bottom, right, bottom)
	for i, r := range cr.Rows {
		a, b := values(r)
		gx := svgLeft + i*svgGroupW + (svgGroupW-2*svgBarW)/2
		for j, v := range []float64{a, b} {
			color := svgColorA
			if j == 1 {
				color = svgColorB
			}
			h := 0
			if scaleMax > 0 {
				h = int(math.Round(float64(svgPanelH) * v / scaleMax))
			}
			x := gx + j*svgBarW
			fmt.Fprintf(w, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"><title>`, x, bottom-h, svgBarW-2, h, color)
			_ = xml.EscapeText(w, []byte(fmt.Sprintf("%s %s: %g", r.Scenario, string(rune('A'+j)), v)))
			fmt.Fprintln(w, `</title></rect>`)
			svgText(w, x+svgBarW/2-1, bottom-h-4, "middle", 10, "", shortNumber(v))
		}
		lx := svgLeft + i*svgGroupW + svgGroupW/2
		ly := bottom + 14
		fmt.Fprintf(w, `<text x="%d" y="%d" text-anchor="end" font-size="%d" transform="rotate(-30 %d %d)">`, lx, ly, svgLabelFont, lx, ly)
		_ = xml.EscapeText(w, []byte(r.Scenario))
		fmt.Fprintln(w, `</text>`)
	}
}

func svgText(w *bufio.Writer, x, y int, anchor string, size int, weight, s string) {
	fmt.Fprintf(w, `<text x="%d" y="%d" text-anchor="%s" font-size="%d"`, x, y, anchor, size)
	if weight != "" {
		fmt.Fprintf(w, ` font-weight="%s"`, weight)
	}
	w.WriteString(">")
	_ = xml.EscapeText(w, []byte(s))
	w.WriteString("</text>\n")
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (1 for v <= 0).
func niceCeil(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// shortNumber formats v compactly: 950, 12.5k, 3.2M, 0.42.
func shortNumber(v float64) string {
	a := math.Abs(v)
	var s string
	switch {
	case a >= 1e6:
		s = fmt.Sprintf("%.1fM", v/1e6)
	case a >= 1e4:
		s = fmt.Sprintf("%.0fk", v/1e3)
	case a >= 1e3:
		s = fmt.Sprintf("%.1fk", v/1e3)
	case a >= 10 || a == 0:
		s = fmt.Sprintf("%.0f", v)
	case a >= 1:
		s = fmt.Sprintf("%.1f", v)
	default:
		s = fmt.Sprintf("%.2f", v)
	}
	return strings.Replace(s, ".0k", "k", 1)
}
