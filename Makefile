# zkproxy — developer entry points. `make test` is the README's test command and
# what .ci/run runs: it installs what the tests need, then runs everything.
GO        ?= go
# A count, not a duration: Go 1.26's fuzz coordinator can report its own
# -fuzztime deadline as a failure ("context deadline exceeded", no crasher;
# golang/go#75804, fixed in 1.27). 1.5M executions take 30-45 s per target here.
FUZZTIME  ?= 1500000x
# The handoff record decoder runs about 7,000 executions/s here (its seeds
# are whole sessions): 400k take about a minute.
HANDOFF_FUZZTIME ?= 400000x
# 30 minutes per package: the slowest (test/e2e) takes about 5 under -race,
# so a hang fails CI half an hour early and scripts/gotest.sh names it.
TESTFLAGS ?= -race -count=1 -timeout 30m

.PHONY: test test-short deps vet lint rules fuzz bench demo build soak soak-fleet soak-upgrade bench-upgrade bench-scale

build:
	$(GO) build ./...

deps:
	@bash scripts/test-deps.sh

vet:
	$(GO) vet ./...

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi

# The alert rules: promtool (Debian "prometheus") checks them and runs their
# unit tests, one firing and one silent case per alert.
rules: deps
	promtool check rules deploy/prometheus/alerts.yml
	promtool test rules deploy/prometheus/alerts_test.yml

test: deps lint rules
	GO=$(GO) scripts/gotest.sh $(TESTFLAGS) ./...
	$(MAKE) fuzz

test-short:
	$(GO) test -short -count=1 ./...

# Each fuzz target runs for FUZZTIME; Go allows one -fuzz target per invocation.
fuzz:
	@for t in $$($(GO) test ./jute -list '^Fuzz' | grep '^Fuzz'); do \
		echo "fuzz $$t for $(FUZZTIME)"; \
		$(GO) test ./jute -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; \
	done
	$(GO) test ./proxy -run '^$$' -fuzz '^FuzzDecodeHandoffSession$$' -fuzztime $(HANDOFF_FUZZTIME)

# Codec micro-benchmarks, then direct vs HAProxy vs zkproxy on a real ZooKeeper
# (test/relaybench; ZKPROXY_BENCH_REPS, _DURATION, _IDLE, _TARGETS tune it), then the
# CPU per relayed ping of idle sessions, HAProxy beside zkproxy (TestIdlePingCost).
# BENCH_IDLE idle sessions for the memory and idle-ping rows: issue 21's scale
# (the descriptor limit here allows about 9,900 with two each).
BENCH_IDLE ?= 9000
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./jute/ ./proxy/
	ZKPROXY_BENCH=1 ZKPROXY_BENCH_IDLE=$(BENCH_IDLE) ZKPROXY_BENCH_OUT=$(CURDIR)/bench-results.md $(GO) test -count=1 -timeout 60m \
		-run TestCompareRelays -v ./test/relaybench | grep -v '^ *[0-9:.]* \['
	ZKPROXY_BENCH_IDLEPING=1 ZKPROXY_BENCH_IDLE=$(BENCH_IDLE) $(GO) test -count=1 -timeout 60m -run TestIdlePingCost -v ./test/relaybench \
		| grep -v '^ *[0-9:.]* \['

# The stress test at length: SOAK_DURATION of load spread over the stages,
# SOAK_CLIENTS clients (every 4th on the Java client), through two zkproxies too.
SOAK_DURATION ?= 10m
SOAK_CLIENTS  ?= 40
soak: deps
	ZKPROXY_SOAK_DURATION=$(SOAK_DURATION) ZKPROXY_SOAK_CLIENTS=$(SOAK_CLIENTS) \
		$(GO) test -race -count=1 -timeout 90m -run TestStress -v ./test/e2e

# The fleet migration (three replicas, Java workload) FLEET_CHAOS_RUNS times,
# each with a random replica killed at a random stage; every run's seed,
# victim, stage and result is logged (make test runs one).
FLEET_CHAOS_RUNS ?= 10
soak-fleet: deps
	ZKPROXY_FLEET_CHAOS_RUNS=$(FLEET_CHAOS_RUNS) $(GO) test -race -count=1 -timeout 90m -run TestFleetChaos -v ./test/e2e

# In-place upgrades under load, 10 in a row (make test runs 2; docs/upgrade.md).
soak-upgrade: deps
	ZKPROXY_UPGRADE_ROUNDS=10 $(GO) test -count=1 -timeout 30m -run TestUpgradeUnderLoad -v ./test/upgrade

# An upgrade with 1,000 and 5,000 sessions: its duration and each session's
# longest pause (ZKPROXY_BENCH_UPGRADE_SESSIONS, _INTERVAL tune it).
bench-upgrade: deps
	ZKPROXY_BENCH_UPGRADE=1 $(GO) test -count=1 -timeout 30m -run TestUpgradeBench -v ./test/upgrade \
		| grep -E 'sessions|upgrade|PASS|FAIL|ok'

# A real local mitosis through zkproxy, narrated, ending with a report.
demo: deps
	@mkdir -p bin
	$(GO) build -o bin/zkproxy ./cmd/zkproxy
	$(GO) build -o bin/zkdemo ./cmd/zkdemo
	./bin/zkdemo --zkproxy bin/zkproxy

# A cutover and then an upgrade of 5,000 and 9,000 idle sessions plus 64 busy
# ones: their durations and the busy sessions' pauses (ZKPROXY_BENCH_SCALE_SESSIONS,
# ZKPROXY_BENCH_SCALE_ARGS tune it; --cutover-concurrency-max=8 gives the fixed 8 of old).
bench-scale: deps
	ZKPROXY_BENCH_SCALE=1 $(GO) test -count=1 -timeout 60m -run TestScaleBench -v ./test/upgrade \
		| grep -v '^ *[0-9:.]* \['
