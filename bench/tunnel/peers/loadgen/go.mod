module causeway.dev/bench/loadgen

go 1.26
