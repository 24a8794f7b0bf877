// Command steady is an HTTP server whose every request costs the same CPU work, given in
// microseconds by its work_us query parameter: a server with no variance of its own. The
// benchmark offers it the service's constant rate with the service's CPU per request, so
// its p99/p50 is the tail that this machine and the load generator alone would give the
// service.
package main

import (
	"flag"
	"log"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"
)

// sink keeps the compiler from dropping the work.
var sink uint64 = 1

// work runs n rounds of a xorshift step, each depending on the last: a fixed amount of CPU
// work which, as a real request's does, takes longer when the machine takes the CPU away.
func work(n int) {
	x := sink
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	sink = x | 1
}

// roundsPerMicrosecond is the fastest of several timed runs: the one the machine disturbed
// least.
func roundsPerMicrosecond() float64 {
	const rounds = 2_000_000
	best := time.Duration(1<<63 - 1)
	for i := 0; i < 25; i++ {
		start := time.Now()
		work(rounds)
		if elapsed := time.Since(start); elapsed < best {
			best = elapsed
		}
	}
	return rounds / (float64(best) / float64(time.Microsecond))
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	flag.Parse()
	// One thread runs the handlers, as one event loop runs the service's worker.
	runtime.GOMAXPROCS(1)
	// No collection until the heap nears the limit: a benchmark's minutes of requests reach
	// it at most a few times, so the collector's pauses add no variance of their own.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(256 << 20)
	perMicrosecond := roundsPerMicrosecond()
	handler := func(w http.ResponseWriter, r *http.Request) {
		micros, err := strconv.ParseFloat(r.URL.Query().Get("work_us"), 64)
		if err != nil || micros < 0 || micros > 1e6 {
			http.Error(w, "work_us: the CPU work per request, 0 to 1000000 microseconds", http.StatusBadRequest)
			return
		}
		work(int(micros * perMicrosecond))
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	}
	log.Printf("serving on %s, %.0f rounds of work per microsecond", *listen, perMicrosecond)
	log.Fatal(http.ListenAndServe(*listen, http.HandlerFunc(handler)))
}
