-- wrk script for `make bench` (Benchmarks/run.sh).
--
--   BENCH_TOKEN=... wrk -t2 -c16 -d10s --latency -s send.lua URL -- MODE SECONDS [DRAIN]
--
-- MODE "send": POST the JSON send-email request with the bearer token from
-- $BENCH_TOKEN; "attach": the same with a 100 KiB attachment. MODE "get": plain GET (the nginx `return 200` baseline), so
-- both runs pay the same wrk-side costs.
--
-- Counting what was sent against what the SMTP sink received only works if
-- no send is still in flight when wrk stops (wrk just drops such requests,
-- and Mailgate may still deliver them). So each thread stops starting new
-- requests DRAIN seconds (default 0.5) before the end: delay() then parks
-- every connection until wrk's timer fires. Throughput is computed over the
-- window from the first request to the last response, not wrk's
-- Requests/sec (which would include the idle tail).
--
-- done() prints one machine-readable line, "BENCH key=value ...".

local ffi = require("ffi")
ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } mailgate_bench_timespec;
    int clock_gettime(int clock, mailgate_bench_timespec *ts);
]]
local timespec = ffi.new("mailgate_bench_timespec")
local function now()
    ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC
    return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

-- Main state: keep every thread so done() can read its counters.
local threads = {}
function setup(thread)
    table.insert(threads, thread)
end

-- Thread state. Globals, so that thread:get() can read them in done().
started, answered, first, last = 0, 0, 0, 0
statuses = {}
local request_bytes, deadline
local park_ms = 3600 * 1000

function init(args)
    local mode = args[1] or "send"
    local seconds = tonumber(args[2] or "10")
    local drain = tonumber(args[3] or "0.5")
    deadline = now() + seconds - drain
    if mode == "send" then
        local token = os.getenv("BENCH_TOKEN") or error("BENCH_TOKEN is not set")
        request_bytes = wrk.format("POST", nil, {
            ["Authorization"] = "Bearer " .. token,
            ["Content-Type"] = "application/json",
        }, '{"to": "bench@example.com", "subject": "Mailgate bench", ' ..
           '"message": "One of many identical messages from make bench."}')
    elseif mode == "attach" then
        -- The same send with a 102,399-byte attachment ("ABC" repeated:
        -- 136,532 characters of base64), the issue 8 bench row.
        local token = os.getenv("BENCH_TOKEN") or error("BENCH_TOKEN is not set")
        request_bytes = wrk.format("POST", nil, {
            ["Authorization"] = "Bearer " .. token,
            ["Content-Type"] = "application/json",
        }, '{"to": "bench@example.com", "subject": "Mailgate bench", ' ..
           '"message": "One of many identical messages from make bench.", ' ..
           '"attachments": [{"filename": "bench.bin", "content": "' .. string.rep("QUJD", 34133) .. '"}]}')
    elseif mode == "get" then
        request_bytes = wrk.format("GET")
    else
        error("unknown mode " .. mode .. " (send, attach or get)")
    end
end

function delay()
    if now() >= deadline then return park_ms end
    return 0
end

function request()
    started = started + 1
    if first == 0 then first = now() end
    return request_bytes
end

function response(status, headers, body)
    answered = answered + 1
    last = now()
    statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
    local total_started, total_answered, first_t, last_t = 0, 0, math.huge, 0
    local by_status = {}
    for _, thread in ipairs(threads) do
        total_started = total_started + thread:get("started")
        total_answered = total_answered + thread:get("answered")
        local f, l = thread:get("first"), thread:get("last")
        if f > 0 and f < first_t then first_t = f end
        if l > last_t then last_t = l end
        for status, count in pairs(thread:get("statuses")) do
            by_status[status] = (by_status[status] or 0) + count
        end
    end
    local window = (last_t > first_t) and (last_t - first_t) or 0
    local ok, non2xx = 0, 0
    local list = {}
    for status, count in pairs(by_status) do
        if status >= 200 and status < 300 then ok = ok + count else non2xx = non2xx + count end
        table.insert(list, string.format("%d:%d", status, count))
    end
    table.sort(list)
    local e = summary.errors
    io.write(string.format(
        "BENCH started=%d answered=%d ok=%d non2xx=%d statuses=%s window_s=%.4f rate=%.1f " ..
        "p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
        "err_connect=%d err_read=%d err_write=%d err_timeout=%d err_status=%d\n",
        total_started, total_answered, ok, non2xx, (#list > 0) and table.concat(list, ",") or "-",
        window, (window > 0) and (total_answered / window) or 0,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
        e.connect, e.read, e.write, e.timeout, e.status))
end
