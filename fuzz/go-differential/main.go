// Reference results from Go's standard library for the webhook's Go-compatible parsers
// (webhook/src/go.rs), used by fuzz/tests/go_differential.rs. Reads one JSON string per line on stdin and
// writes one JSON object per line: the results of time.ParseDuration, strconv.ParseInt (base 0 and 10),
// strconv.ParseBool, encoding/csv's first record and path.Clean.
package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
)

type result struct {
	Duration *int64   `json:"duration"`
	Int      *int64   `json:"int"`
	Int10    *int64   `json:"int10"`
	Bool     *bool    `json:"bool"`
	CSV      []string `json:"csv"`
	CSVOk    bool     `json:"csv_ok"`
	Clean    string   `json:"clean"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var s string
		if err := json.Unmarshal(in.Bytes(), &s); err != nil {
			panic(err)
		}
		var r result
		if d, err := time.ParseDuration(s); err == nil {
			v := int64(d)
			r.Duration = &v
		}
		if v, err := strconv.ParseInt(s, 0, 64); err == nil {
			r.Int = &v
		}
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			r.Int10 = &v
		}
		if v, err := strconv.ParseBool(s); err == nil {
			r.Bool = &v
		}
		if rec, err := csv.NewReader(strings.NewReader(s)).Read(); err == nil {
			r.CSV, r.CSVOk = rec, true
		}
		r.Clean = path.Clean(s)
		if err := out.Encode(r); err != nil {
			panic(err)
		}
	}
}
