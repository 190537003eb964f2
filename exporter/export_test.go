package exporter_test

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ihr-tools/ihr/apiclient"
	"github.com/ihr-tools/ihr/apiserver/apitest"
	"github.com/ihr-tools/ihr/exporter"
	"github.com/ihr-tools/ihr/filestore/local"
	"github.com/ihr-tools/ihr/record"
)

func create(t *testing.T, c *apiclient.Client, file string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		_, err := c.Create(context.Background(), record.Create, &record.Record{
			ContactAlertType: "Functional", DocumentType: "InvoiceHeader", DocumentID: record.Int64(int64(1000 + i)),
			ExternalID: fmt.Sprintf("ERP-%05d", i), IntegrationFilename: file, Status: "Success",
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// createDuring creates more matching records after the first page has
// been read, as another worker would while an export runs.
type createDuring struct {
	exporter.Indexer
	pages int
	more  func()
}

func (c *createDuring) Index(ctx context.Context, q *apiclient.Query) ([]*record.Record, error) {
	page, err := c.Indexer.Index(ctx, q)
	if c.pages++; c.pages == 1 {
		c.more()
	}
	return page, err
}

// Records pages by id against a real ihr-api: more than two pages, with
// records created mid-export, come out once each, in id order.
func TestRecordsPagesByID(t *testing.T) {
	srv := apitest.Start(t)
	c, err := apiclient.New(apiclient.Config{BaseURL: srv.URL, APIKey: srv.APIKey, RateLimit: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const first = apiclient.MaxPageSize*2 + 7
	create(t, c, "export.csv", 0, first)
	create(t, c, "other.csv", 500, 3) // not selected
	api := &createDuring{Indexer: c, more: func() { create(t, c, "export.csv", first, 5) }}
	var out strings.Builder
	rw, err := exporter.NewRecordWriter(&out, []string{"id", "external-id"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := exporter.Records(context.Background(), api, func() *apiclient.Query {
		return apiclient.NewQuery().Eq("integration-filename", "export.csv")
	}, rw)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(out.String())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if n != first+5 || len(rows) != first+6 || strings.Join(rows[0], ",") != "id,external-id" {
		t.Fatalf("wrote %d records, %d lines (header %v); want %d", n, len(rows), rows[0], first+5)
	}
	var last int64
	for i, r := range rows[1:] {
		id, _ := strconv.ParseInt(r[0], 10, 64)
		if id <= last || r[1] != fmt.Sprintf("ERP-%05d", i) {
			t.Fatalf("line %d: %v after id %d", i+2, r, last)
		}
		last = id
	}
}

// ToStore leaves nothing on the store when the producer fails half-way,
// and the producer's error is the one returned.
func TestToStoreIsAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	st, err := local.New(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	boom := errors.New("API went away")
	err = exporter.ToStore(ctx, st, "half.csv", func(w io.Writer) error {
		if _, err := io.WriteString(w, "id\r\n1\r\n"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the producer's", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "half.csv")); !os.IsNotExist(err) {
		t.Fatalf("a failed export left a file: %v", err)
	}
	if err := exporter.ToStore(ctx, st, "whole.csv", func(w io.Writer) error {
		_, err := io.WriteString(w, "id\r\n1\r\n")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "whole.csv")); err != nil || string(b) != "id\r\n1\r\n" {
		t.Fatalf("whole.csv = %q, %v", b, err)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 1 {
		t.Errorf("store holds %d entries, want only whole.csv", len(left))
	}
}
