package main

import (
	"testing"
	"time"

	"github.com/cairn-db/cairn/api"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "1GiB", want: 1 << 30},
		{in: "200MiB", want: 200 << 20},
		{in: "1.5KiB", want: 1536},
		{in: "10MB", want: 10e6},
		{in: "4096", want: 4096},
		{in: "12B", want: 12},
		{in: "0", bad: true},
		{in: "-1GiB", bad: true},
		{in: "lots", bad: true},
	} {
		got, err := parseSize(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("parseSize(%q) = %d, %v; want %d (error: %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestPercentile(t *testing.T) {
	d := make([]time.Duration, 1000)
	for i := range d {
		d[i] = time.Duration(i+1) * time.Millisecond // 1ms..1000ms, sorted
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {0.999, 999 * time.Millisecond}, {1, time.Second}, {0, time.Millisecond}} {
		if got := percentile(d, tc.q); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := percentile(d[:1], 0.999); got != time.Millisecond {
		t.Errorf("percentile of one = %v", got)
	}
}

func TestJSONAndTextForms(t *testing.T) {
	for _, tc := range []struct {
		name      string
		key       []byte
		v         api.Value
		wantValue any
		wantType  string
		wantEnc   string
		wantText  string
	}{
		{"text", []byte("k"), api.Value{Bytes: []byte("hello world")}, "hello world", "bytes", "", "hello world"},
		{"int", []byte("k"), api.Value{Int: -42, IsInt: true}, int64(-42), "int", "", ""},
		{"binary", []byte("k"), api.Value{Bytes: []byte{0xff, 0x00}}, "/wA=", "bytes", "base64", `"\xff\x00"`},
		{"tab", []byte("k"), api.Value{Bytes: []byte("a\tb")}, "a\tb", "bytes", "", `"a\tb"`},
	} {
		j := toJSONKV(tc.key, tc.v)
		if j.Value != tc.wantValue || j.Type != tc.wantType || j.Encoding != tc.wantEnc {
			t.Errorf("%s: toJSONKV = %+v", tc.name, j)
		}
		if !tc.v.IsInt {
			if got := textField(tc.v.Bytes); got != tc.wantText {
				t.Errorf("%s: textField = %s, want %s", tc.name, got, tc.wantText)
			}
		}
	}
}
