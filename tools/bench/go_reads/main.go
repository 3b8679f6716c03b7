// W4 in Go: 32 goroutines (GOMAXPROCS = the CPUs the process may use), each
// reading 4 KiB at random aligned offsets of a page-cached file with
// ReadAt (pread), N reads in all; IOPS. Goroutine i draws its offsets as
// urt-bench-reads' task i does, and checks each read's length and block
// index. The file is made by the C programs (urt-bench-raw-reads); this one
// only checks its size.
//
// go run tools/bench/go_reads/main.go --file F --file-mib M --reads N
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

const block = 4096

func rnd(s *uint64) uint64 {
	*s ^= *s >> 12
	*s ^= *s << 25
	*s ^= *s >> 27
	return *s * 0x2545f4914f6cdd1d
}

func die(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "urt-bench-go-reads: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	file := flag.String("file", "urt-bench-w4.dat", "the file of blocks")
	mib := flag.Uint64("file-mib", 256, "its size in MiB")
	reads := flag.Uint64("reads", 1000000, "reads in all")
	q := flag.Uint("inflight", 32, "goroutines, one read in flight each")
	flag.Parse()
	if *mib == 0 || *reads == 0 || *q == 0 || *q > 1024 {
		die("--file-mib, --reads and --inflight (at most 1024) want counts from 1")
	}
	blocks := *mib * (1 << 20) / block
	f, err := os.Open(*file)
	if err != nil {
		die("%v (make it with urt-bench-raw-reads first)", err)
	}
	st, err := f.Stat()
	if err != nil || uint64(st.Size()) != blocks*block {
		die("%s is not %d MiB of blocks (make it with urt-bench-raw-reads first)", *file, *mib)
	}
	var done uint64
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := uint(0); i < *q; i++ {
		left := *reads / uint64(*q)
		if uint64(i) < *reads%uint64(*q) {
			left++
		}
		seed := uint64(0x9e3779b97f4a7c15) * uint64(i+1)
		wg.Add(1)
		go func(left, seed uint64) {
			defer wg.Done()
			buf := make([]byte, block)
			for ; left > 0; left-- {
				b := rnd(&seed) % blocks
				n, err := f.ReadAt(buf, int64(b*block))
				if n != block {
					die("read of block %d: %d bytes, %v", b, n, err)
				}
				if binary.LittleEndian.Uint64(buf) != b {
					die("block %d came back without its index", b)
				}
				atomic.AddUint64(&done, 1)
			}
		}(left, seed)
	}
	wg.Wait()
	s := time.Since(t0).Seconds()
	if done != *reads {
		die("%d reads checked, expected %d", done, *reads)
	}
	iops := float64(*reads) / s
	fmt.Printf("%s, GOMAXPROCS %d: %d reads of 4 KiB, %d goroutines: %.3f s, %.0f IOPS\n",
		runtime.Version(), runtime.GOMAXPROCS(0), *reads, *q, s, iops)
	fmt.Printf("result W4 go iops %.6g\n", iops)
}
