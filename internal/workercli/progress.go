package workercli

import (
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/state"
)

// progressMinRows: smaller files finish before a bar would tell anyone
// anything; it would only clutter the terminal.
const progressMinRows = 2000

// progress draws one bar per large file (rows done / total, rate, ETA) on
// an interactive terminal. It is an importer.Observer.
type progress struct {
	w    io.Writer
	mu   sync.Mutex
	bars map[string]*progressbar.ProgressBar
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, bars: map[string]*progressbar.ProgressBar{}}
}

func (p *progress) FileStarted(source, name string, rows int64) {
	if rows < progressMinRows {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bars[source+"/"+name] = progressbar.NewOptions64(rows,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(source+" "+name),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("rows"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetWidth(30),
		progressbar.OptionClearOnFinish(),
	)
}

func (p *progress) RowDone(string, string, state.Result) {}

func (p *progress) Progress(source, name string, done, _ int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b := p.bars[source+"/"+name]; b != nil {
		_ = b.Set64(done)
	}
}

func (p *progress) FileDone(source, name string, _ importer.FileResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b := p.bars[source+"/"+name]; b != nil {
		_ = b.Finish()
		delete(p.bars, source+"/"+name)
	}
}
