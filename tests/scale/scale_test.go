package scale

import (
	"context"
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/apiserver/apitest"
	"github.com/ihr-tools/ihr/internal/binharness"
	"github.com/ihr-tools/ihr/internal/testservers"
	"github.com/ihr-tools/ihr/state"
)

const (
	integration = "ERP-SCALE"
	nFiles      = 30
	replicas    = 3
	lease       = 4 * time.Second
	// splitRows splits the larger files (about a third of the rows) into
	// ranges the replicas share.
	splitRows = 1000
)

// binharness.Main, not testservers.Main: the one test starts a single
// PostgreSQL cluster, so sharing one buys nothing, while the worker build
// must be removed after the run.
func TestMain(m *testing.M) { binharness.Main(m) }

// dropFiles writes nFiles canonical CSV files of 100 to 5,000 rows into
// inbox/ and returns each file's external-ids in row order. Sizes are
// skewed toward small files (so the test stays short) and shuffled so
// the big ones are spread over the name order every worker follows.
func dropFiles(t *testing.T, root string, rnd *rand.Rand) map[string][]string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "inbox"), 0o755); err != nil {
		t.Fatal(err)
	}
	sizes := make([]int, nFiles)
	for i := range sizes {
		x := float64(i) / float64(nFiles-1)
		sizes[i] = 100 + int(4900*x*x*x*x*x*x)
	}
	rnd.Shuffle(len(sizes), func(i, j int) { sizes[i], sizes[j] = sizes[j], sizes[i] })
	files := map[string][]string{}
	for i, n := range sizes {
		name := fmt.Sprintf("results-%02d.csv", i)
		var b strings.Builder
		b.WriteString("external-id,document-type,document-id,status,contact-alert-type,response-message\r\n")
		var ids []string
		for r := 1; r <= n; r++ {
			id := fmt.Sprintf("F%02d-%d", i, r)
			status := "Success"
			if r%7 == 0 {
				status = "Error"
			}
			fmt.Fprintf(&b, "%s,InvoiceHeader,%d,%s,Functional,row %d of %s\r\n", id, r, status, r, name)
			ids = append(ids, id)
		}
		if err := os.WriteFile(filepath.Join(root, "inbox", name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		files[name] = ids
	}
	return files
}

// replica is one worker "machine": it runs `ihr-worker run` again and
// again, as a systemd timer or a Kubernetes CronJob would, until told to
// stop or killed.
type replica struct {
	n    int
	mu   sync.Mutex
	cmd  *exec.Cmd // the run in progress
	pids []int
	dead bool
	runs int
	exit []int
	logs strings.Builder
}

func (r *replica) loop(t *testing.T, bin, cfg string, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-stop:
			return
		default:
		}
		cmd := exec.Command(bin, "run", "--config", cfg)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		r.mu.Lock()
		if r.dead {
			r.mu.Unlock()
			return
		}
		if err := cmd.Start(); err != nil {
			r.mu.Unlock()
			t.Error(err)
			return
		}
		r.cmd, r.runs = cmd, r.runs+1
		r.pids = append(r.pids, cmd.Process.Pid)
		r.mu.Unlock()
		err := cmd.Wait()
		r.mu.Lock()
		r.cmd = nil
		code := cmd.ProcessState.ExitCode()
		fmt.Fprintf(&r.logs, "--- replica %d run %d (pid %d): exit %d\n%s", r.n, r.runs, cmd.Process.Pid, code, out.String())
		r.exit = append(r.exit, code)
		dead := r.dead
		r.mu.Unlock()
		if dead {
			return
		}
		// Every run of a live replica exits 0: files another replica holds
		// (or a dead one held until its lease runs out) are that one's
		// business, and a file archived by another replica between this
		// run's listing and its claim is nothing to do, not an outage.
		if code != 0 {
			t.Errorf("replica %d: ihr-worker run exited %d (%v)", r.n, code, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// kill SIGKILLs the run in progress and retires the replica.
func (r *replica) kill() (pid int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0, false
	}
	r.dead = true
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	return r.cmd.Process.Pid, true
}

func (r *replica) currentPid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// TestThreeWorkersOneKilled is the scale-out proof: three ihr-worker
// processes share one PostgreSQL ledger, one SFTP drop of 30 files and one
// ihr-api; one of them is SIGKILLed in the middle of a file. Every file
// must be processed once (archived exactly once, nothing left behind),
// every row must have exactly one record on the server, and every report
// must be complete.
func TestThreeWorkersOneKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process scale test")
	}
	ctx := context.Background()
	pg := testservers.StartPostgres(t)
	ledgerDSN := pg.NewDatabase(t)
	sftp := testservers.StartSFTP(t, testservers.SFTPOptions{})
	// One ihr-api, on PostgreSQL as a deployment with replicas would run it.
	api := apitest.Start(t, apitest.WithPostgres(pg.NewDatabase(t)))
	client, err := apiclient.New(apiclient.Config{BaseURL: api.URL, APIKey: api.APIKey, RateLimit: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	setup, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := client.CreateIntegration(setup, &apiclient.Integration{Code: integration, Name: "ERP scale-out"}); err != nil {
		t.Fatal(err)
	}
	bin := binharness.Binary(t, "ihr-worker") // as deployed

	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(uint64(seed), 8))
	files := dropFiles(t, sftp.Root, rnd)
	total := 0
	for _, ids := range files {
		total += len(ids)
	}

	cfg := filepath.Join(t.TempDir(), "worker.yaml")
	// The shared budget is generous so the API, not the budget, sets the
	// pace; it is still one budget for the three replicas.
	yaml := fmt.Sprintf(`api:
  url: %s
  api_key: %s
  rate_limit: 3000
  concurrency: 8
state: %s
lease: %s
sources:
  - name: erp
    url: sftp://%s@%s%s
    key_file: %s
    known_hosts: %s
    integration: %s
    stable_for: 0s
    split_rows: %d
`, api.URL, api.APIKey, ledgerDSN, lease, sftp.User, sftp.Addr, sftp.Root, sftp.KeyFile, sftp.KnownHostsFile, integration, splitRows)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	// Create the ledger's tables now, so the watcher below can query them
	// before the first replica has started.
	led, err := state.OpenPostgres(ctx, ledgerDSN, state.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	led.Close()
	db, err := pgx.Connect(ctx, ledgerDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)

	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	reps := make([]*replica, replicas)
	for i := range reps {
		reps[i] = &replica{n: i}
		wg.Add(1)
		go reps[i].loop(t, bin, cfg, stop, &wg)
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		for _, r := range reps {
			r.kill()
		}
		wg.Wait()
		if t.Failed() || os.Getenv("IHR_SCALE_LOGS") == "1" {
			for _, r := range reps {
				t.Log(r.logs.String())
			}
		}
	}()

	// Kill replica 0 once it is well inside a range of a split file (or,
	// if it never is, inside a whole file): it holds the claim, has
	// dispatched rows, and has rows left to send.
	victim := reps[0]
	var killedFile, killedWhere string
	var killedMark, killedRows int64
	deadline := time.Now().Add(90 * time.Second)
	var busySince time.Time
	for killedFile == "" {
		// Let a few files finish first, so the kill lands in a busy
		// steady state rather than at start-up.
		var done int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM ihr_worker_files WHERE status = 'done'`).Scan(&done); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("replica 0 never got well inside a file")
		}
		if pid := victim.currentPid(); pid != 0 && done >= 4 {
			if busySince.IsZero() {
				busySince = time.Now()
			}
			owner := fmt.Sprint(pid)
			var name, where string
			var mark, rows int64
			err := db.QueryRow(ctx, `SELECT name, 'range ' || idx, dispatch_mark - first_row + 1, last_row - first_row + 1
				FROM ihr_worker_ranges WHERE owner LIKE '%:' || $1::text || ':%' AND NOT done
				AND dispatch_mark >= first_row AND dispatch_mark < last_row AND last_row - first_row >= 300`, owner).Scan(&name, &where, &mark, &rows)
			if err != nil && time.Since(busySince) > 5*time.Second {
				where = "whole file"
				err = db.QueryRow(ctx, `SELECT name, dispatch_mark, rows FROM ihr_worker_files
					WHERE owner LIKE '%:' || $1::text || ':%' AND status = 'processing' AND dispatch_mark > 0
					AND dispatch_mark < rows AND rows >= 300`, owner).Scan(&name, &mark, &rows)
			}
			if err == nil {
				if _, ok := victim.kill(); ok {
					killedFile, killedWhere, killedMark, killedRows = name, where, mark, rows
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("SIGKILLed replica 0 after %v in %s, %s (dispatch mark %d of %d rows)", time.Since(start).Round(time.Millisecond),
		killedFile, killedWhere, killedMark, killedRows)

	// The survivors go on until every file is done; the killed replica's
	// file waits for its lease to expire, then one of them resumes it.
	deadline = time.Now().Add(3 * time.Minute)
	for {
		var done, left int
		if err := db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status <> 'done')
			FROM ihr_worker_files`).Scan(&done, &left); err != nil {
			t.Fatal(err)
		}
		if done == nFiles && left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 3 minutes: %d files done, %d not", done, left)
		}
		time.Sleep(200 * time.Millisecond)
	}
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	t.Logf("%d files, %d rows in %v (%.0f rows/s) by %d replicas, one killed; exit codes of the runs per replica: %v %v %v",
		nFiles, total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), replicas, reps[0].exit, reps[1].exit, reps[2].exit)

	// Every file processed once: in archive/ exactly once, nothing in
	// inbox/ or failed/, and the killed file resumed by someone else.
	ls := func(dir string) []string {
		ents, _ := os.ReadDir(filepath.Join(sftp.Root, dir))
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	if in, failed := ls("inbox"), ls("failed"); len(in) != 0 || len(failed) != 0 {
		t.Errorf("left behind: inbox %v, failed %v", in, failed)
	}
	if a := ls("archive"); len(a) != nFiles {
		t.Errorf("archive holds %d files, want %d: %v", len(a), nFiles, a)
	}
	var runs int64
	var owner string
	if err := db.QueryRow(ctx, `SELECT run, owner FROM ihr_worker_files WHERE name = $1`, killedFile).Scan(&runs, &owner); err != nil {
		t.Fatal(err)
	}
	if runs != 1 {
		t.Errorf("%s: run %d; the survivor should have resumed run 1, not started over", killedFile, runs)
	}

	// The larger files were split and every range was finished; the
	// report checks below hold for them as for the others.
	var splitFiles, openRanges int
	if err := db.QueryRow(ctx, `SELECT count(DISTINCT name), count(*) FILTER (WHERE NOT done) FROM ihr_worker_ranges`).Scan(&splitFiles, &openRanges); err != nil {
		t.Fatal(err)
	}
	if splitFiles == 0 || openRanges != 0 {
		t.Errorf("split files: %d, ranges not done: %d", splitFiles, openRanges)
	}
	t.Logf("%d files split into ranges of %d rows", splitFiles, splitRows)

	// The replicas drew on one shared rate budget (api.rate_limit with a
	// postgres:// state), keyed by a hash of the credential.
	var budgets int
	var budgetRate float64
	if err := db.QueryRow(ctx, `SELECT count(*), max(rate) FROM ihr_rate_budget`).Scan(&budgets, &budgetRate); err != nil {
		t.Fatalf("shared rate budget: %v", err)
	}
	if budgets != 1 || budgetRate != 3000 {
		t.Errorf("shared rate budget: %d rows, rate %v; want one row of 3000/s", budgets, budgetRate)
	}

	// Every row: exactly one record on the server.
	perFile := map[string]map[string]int{}
	for r, err := range client.All(ctx, apiclient.NewQuery().Integration(integration)) {
		if err != nil {
			t.Fatal(err)
		}
		if perFile[r.IntegrationFilename] == nil {
			perFile[r.IntegrationFilename] = map[string]int{}
		}
		perFile[r.IntegrationFilename][r.ExternalID]++
	}
	records := 0
	for name, ids := range files {
		got := perFile[name]
		for _, id := range ids {
			if got[id] != 1 {
				t.Errorf("%s: external-id %s has %d records, want 1", name, id, got[id])
				break
			}
		}
		if len(got) != len(ids) {
			t.Errorf("%s: %d distinct external-ids on the server, want %d", name, len(got), len(ids))
		}
		for _, n := range got {
			records += n
		}
	}
	if records != total {
		t.Errorf("%d records on the server, want %d", records, total)
	}

	// Every report complete: one line per row, in order, each recorded.
	for name, ids := range files {
		b, err := os.ReadFile(filepath.Join(sftp.Root, "reports", strings.TrimSuffix(name, ".csv")+".response.csv"))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		lines, err := csv.NewReader(strings.NewReader(string(b))).ReadAll()
		if err != nil || len(lines) != len(ids)+1 {
			t.Errorf("%s: report has %d lines (%v), want %d", name, len(lines), err, len(ids)+1)
			continue
		}
		for i, l := range lines[1:] {
			if l[0] != fmt.Sprint(i+1) || l[1] != ids[i] || (l[5] != "created" && l[5] != "already-recorded") || l[6] == "" {
				t.Errorf("%s: report line %d: %v", name, i+1, l)
				break
			}
		}
	}
}
