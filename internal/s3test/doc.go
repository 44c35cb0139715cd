// Package s3test provides S3 servers for tests: a real, signature-checking
// versitygw process (StartVersity), a fast in-process fake (NewFake), and a
// recording, fault-injecting TLS reverse proxy (NewRecorder) that can sit in
// front of either.
//
// Credentials are generated randomly for every server; none are stored in
// fixtures or printed in logs.
package s3test
