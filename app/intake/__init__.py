"""Receiving uploads: the multipart stream, filenames, file types, upload metadata, and the receiver
that stores each file and queues it, all or nothing per request."""
