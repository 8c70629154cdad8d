package main

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"
)

func closedPortURI(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "amqp://guest:guest@" + addr + "/"
}

func TestUnreachableBrokerExitsOneWithOneLine(t *testing.T) {
	var out, errb bytes.Buffer
	start := time.Now()
	code := run([]string{"--uri", closedPortURI(t), "-z", "30"}, &out, &errb)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %q", code, errb.String())
	}
	if time.Since(start) > 3*time.Second {
		t.Fatal("did not fail fast")
	}
	msg := errb.String()
	if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "warrenperf: ") || !strings.Contains(msg, "cannot connect") {
		t.Fatalf("stderr %q, want one clear line", msg)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"-x", "0", "-y", "0"},
		{"stray"},
		{"--scenario", "1"},
		{"--scenarios", "standard", "--scenario", "nope"},
		{"compare", "--a", "amqp://a/"},
		{"compare", "--a", "amqp://a/", "--b", "amqp://b/", "--scenarios", "/does/not/exist.json"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, errb.String())
		}
	}
}

func TestHelpExitsZero(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"-producers", "-pmessages", "-queue-args", "compare"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestCompareUnreachableExitsOne(t *testing.T) {
	var out, errb bytes.Buffer
	u := closedPortURI(t)
	code := run([]string{"compare", "--a", u, "--b", u, "--scenarios", "standard", "--scenario", "2", "--rounds", "1", "--quiet"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "cannot connect") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

func TestClientFlag(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--client", "turbo", "--quiet"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "turbo") {
		t.Fatalf("bad engine: exit %d, stderr %q", code, errb.String())
	}
	u := closedPortURI(t)
	for _, args := range [][]string{
		{"--uri", u, "--client", "fast", "--quiet"},
		{"compare", "--a", u, "--b", u, "--scenarios", "standard", "--scenario", "2", "--rounds", "1", "--client", "fast", "--quiet"},
	} {
		out.Reset()
		errb.Reset()
		if code := run(args, &out, &errb); code != 1 || !strings.Contains(errb.String(), "cannot connect") {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errb.String())
		}
	}
}
