//go:build !nos3

package main

// s3:// buckets (AWS S3 and S3-compatible stores) for checkpoint export and
// restore. It adds about 12 MB to the binary; build with -tags nos3 to
// leave it out. gs:// and azblob:// are not linked in by default (about
// 31 MB for GCS alone); docs/checkpoints.md says how to add them.
import _ "gocloud.dev/blob/s3blob"
