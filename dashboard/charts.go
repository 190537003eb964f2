package dashboard

import (
	"fmt"
	"html"
	"html/template"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ihr-tools/ihr/state"
)

// series is one stacked colour of a bar chart.
type series struct {
	Label  string
	Colour string
	Values []int64 // one per hour
}

// Legend is a chart's series with their 24 h totals, also shown as text.
type Legend struct {
	Label  string
	Colour string
	Total  int64
}

// Chart is an inline SVG with its legend.
type Chart struct {
	SVG    template.HTML
	Legend []Legend
	Total  int64
}

var resultColours = []struct {
	r      state.Result
	colour string
}{
	{state.Created, "#2e7d32"}, {state.AlreadyRecorded, "#81c784"}, {state.Invalid, "#f9a825"}, {state.FailedRow, "#c62828"},
}

func statusColour(code int) string {
	switch {
	case code >= 200 && code < 300:
		return [...]string{"#1565c0", "#42a5f5", "#90caf9"}[code%3]
	case code == 429:
		return "#8e24aa"
	case code >= 400 && code < 500:
		return [...]string{"#ef6c00", "#ffa726", "#ffcc80"}[code%3]
	default:
		return [...]string{"#b71c1c", "#e53935", "#ef9a9a"}[code%3]
	}
}

// charts turns the ledger's hourly counts into the two 24 h charts: rows
// by result, and API answers by HTTP status (rows never sent, such as
// invalid ones, have no status and are left out of the second).
func charts(hc []state.HourCount, since, now time.Time) (rows, api Chart, total int64) {
	n := int(now.Sub(since)/time.Hour) + 1
	hours := make([]time.Time, n)
	for i := range hours {
		hours[i] = since.Add(time.Duration(i) * time.Hour)
	}
	byResult := map[state.Result][]int64{}
	byStatus := map[int][]int64{}
	for _, c := range hc {
		i := int(c.Hour.Sub(since) / time.Hour)
		if i < 0 || i >= n {
			continue
		}
		if byResult[c.Result] == nil {
			byResult[c.Result] = make([]int64, n)
		}
		byResult[c.Result][i] += c.N
		total += c.N
		if c.HTTPStatus > 0 {
			if byStatus[c.HTTPStatus] == nil {
				byStatus[c.HTTPStatus] = make([]int64, n)
			}
			byStatus[c.HTTPStatus][i] += c.N
		}
	}
	var rs []series
	for _, rc := range resultColours {
		v := byResult[rc.r]
		if v == nil && rc.r == state.Invalid {
			// Invalid rows are never sent, so the ledger rarely holds
			// any: a constant 0 would read as "none were invalid".
			continue
		}
		if v == nil {
			v = make([]int64, n)
		}
		rs = append(rs, series{Label: string(rc.r), Colour: rc.colour, Values: v})
	}
	var as []series
	for _, code := range slices.Sorted(maps.Keys(byStatus)) {
		as = append(as, series{Label: "HTTP " + strconv.Itoa(code), Colour: statusColour(code), Values: byStatus[code]})
	}
	return barChart("Rows per hour by result", hours, rs), barChart("API answers per hour by HTTP status", hours, as), total
}

// barChart draws stacked bars, one per hour, as SVG. Every number and
// label is written by this code (labels escaped), never taken raw from
// input.
func barChart(title string, hours []time.Time, ss []series) Chart {
	const w, h, left, bottom, top = 760.0, 190.0, 44.0, 22.0, 8.0
	var c Chart
	var peak int64
	for i := range hours {
		var sum int64
		for _, s := range ss {
			sum += s.Values[i]
		}
		peak = max(peak, sum)
	}
	for _, s := range ss {
		var t int64
		for _, v := range s.Values {
			t += v
		}
		c.Legend = append(c.Legend, Legend{Label: s.Label, Colour: s.Colour, Total: t})
		c.Total += t
	}
	scale := 1.0
	if peak > 0 {
		scale = (h - bottom - top) / float64(peak)
	}
	slot := (w - left) / float64(len(hours))
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %g %g" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`, w, h, html.EscapeString(title))
	fmt.Fprintf(&b, `<line x1="%g" y1="%g" x2="%g" y2="%g" class="axis"/>`, left, h-bottom, w, h-bottom)
	fmt.Fprintf(&b, `<text x="%g" y="%g" class="tick" text-anchor="end">%d</text>`, left-4, top+8, peak)
	fmt.Fprintf(&b, `<text x="%g" y="%g" class="tick" text-anchor="end">0</text>`, left-4, h-bottom)
	for i, hr := range hours {
		x := left + float64(i)*slot + 1
		y := h - bottom
		for _, s := range ss {
			v := s.Values[i]
			if v == 0 {
				continue
			}
			bh := float64(v) * scale
			y -= bh
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %d</title></rect>`,
				x, y, slot-2, bh, s.Colour, hr.UTC().Format("15:04Z"), html.EscapeString(s.Label), v)
		}
		if hr.UTC().Hour()%6 == 0 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%g" class="tick">%s</text>`, x, h-6, hr.UTC().Format("15:04"))
		}
	}
	if c.Total == 0 {
		fmt.Fprintf(&b, `<text x="%g" y="%g" class="empty" text-anchor="middle">nothing in the last 24 h</text>`, (w+left)/2, h/2)
	}
	b.WriteString(`</svg>`)
	c.SVG = template.HTML(b.String()) // #nosec: built above from numbers and escaped labels
	return c
}
