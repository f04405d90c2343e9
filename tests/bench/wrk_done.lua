-- wrk_done: the one machine-readable RESULT line every bench wrk script
-- prints (loaded with dofile by the scripts beside it).
function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f reqs=%d non2xx=%d errs_connect=%d errs_read=%d errs_write=%d errs_timeout=%d secs=%.3f\n",
    summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, summary.requests, e.status,
    e.connect, e.read, e.write, e.timeout, secs))
end
