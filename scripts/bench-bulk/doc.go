// Package benchbulk holds the bulk offload benchmark that scripts/bench
// runs: a host process offloading its existing local results to R2
// (versitygw) through the bulk API, against `rclone copy` of the same files
// to the same server, measured in the same run. It has no code of its own
// outside its test file, which builds only with the bulkbench tag (Linux),
// so `go test ./...` does not build it:
//
//	go test -tags bulkbench ./scripts/bench-bulk -run '^$' -bench BulkOffload -benchtime 1x
package benchbulk
