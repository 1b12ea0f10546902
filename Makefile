# Run `make help` for the targets.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

BIN        ?= bin
IMAGE      ?= aeraki:latest
DEMO_IMAGE ?= aeraki-demo:latest
GO         ?= go
# Heavy tools and test binaries are built once into a cache outside the repository.
CACHE      ?= $(or $(AERAKI_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/aeraki)
LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(CACHE)/tools/golangci-lint-$(LINT_VERSION)/golangci-lint
CONTROLLER_GEN_VERSION := v0.23.0
CONTROLLER_GEN := $(CACHE)/tools/controller-gen-$(CONTROLLER_GEN_VERSION)/controller-gen
# The release binary: static, no paths or symbols. docker/Dockerfile runs `make build`
# itself, so the image and bin/aeraki are built by this one rule (test/manifests checks it).
BUILD_FLAGS := -trimpath -ldflags=-s\ -w
# The Helm chart, and the install manifest `make generate` renders from it with its
# default values (the CRDs of k8s/crds copied into the chart's crds/ first).
CHART := k8s/chart
INSTALL_MANIFEST := k8s/aeraki.yaml
GENERATED := pkg/apis k8s/crds $(CHART)/crds $(INSTALL_MANIFEST)

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/aeraki (static; BIN=dir to build elsewhere)
	CGO_ENABLED=0 $(GO) build $(BUILD_FLAGS) -o $(BIN)/aeraki ./cmd/aeraki

.PHONY: testbin
testbin: ## Build etcd, kube-apiserver and the istiods (pilot-discovery, pilot-discovery-1.30) into the cache (once)
	@hack/testbin.sh >/dev/null

.PHONY: deps
deps: ## Install the system packages the tests need when missing (shellcheck, redis-server; apt-get)
	@hack/deps.sh

# Tests that need no control-plane binaries: everything but the Kubernetes manager's
# tests (envtest) and the parts of test/ that start etcd, kube-apiserver, istiod or
# the built binary. test/listeners runs istiod's listener generation in process.
UNIT_PKGS = $(shell $(GO) list ./cmd/... ./k8s/... ./pkg/... ./plugin/... ./test/listeners/... ./test/dashboard/... | grep -v '/pkg/kube$$')

.PHONY: unit
unit: ## Run the tests that need no cluster: generators and goldens, fuzz seeds, translate, plan, push loop, model, manifest, CLI, istiod's listeners in process
	$(GO) test -count=1 -timeout 5m $(UNIT_PKGS)

.PHONY: test
test: deps testbin ## Run every test: unit, golden, fuzz seeds, real kube-apiserver and istiod, end to end
	AERAKI_TESTBIN=$$(hack/testbin.sh) $(GO) test -count=1 -timeout 30m ./...
	cd demo/apps && $(GO) test -count=1 ./...

.PHONY: compat
compat: testbin ## Run the end-to-end compatibility test against every istiod of README's table (test/e2e TestCompat)
	AERAKI_TESTBIN=$$(hack/testbin.sh) $(GO) test -count=1 -timeout 20m -v -run '^TestCompat' ./test/e2e

.PHONY: e2e
e2e: testbin ## Run only the end-to-end tests (real etcd, kube-apiserver, istiod, controller)
	AERAKI_TESTBIN=$$(hack/testbin.sh) $(GO) test -count=1 -timeout 20m -v ./test/...

# Services the scale harness creates; `make test` runs it with 200.
AERAKI_SCALE_SERVICES ?= 1000

.PHONY: scale
scale: testbin ## Run the scale harness (test/scale): 1,000 services on a real kube-apiserver and istiod; AERAKI_SCALE_SERVICES=n for another size
	AERAKI_TESTBIN=$$(hack/testbin.sh) AERAKI_SCALE_SERVICES=$(AERAKI_SCALE_SERVICES) $(GO) test -count=1 -timeout 120m -v -run 'TestScale$$' ./test/scale

# Edits TestEditLatency makes, one at a time; `make test` runs it with 100 services and 10.
AERAKI_EDITS ?= 50

.PHONY: edit-latency
edit-latency: testbin ## Measure one VirtualService edit's latency to its EnvoyFilter and a sidecar's listener: 1,000 services, 50 edits (AERAKI_SCALE_SERVICES, AERAKI_EDITS)
	AERAKI_TESTBIN=$$(hack/testbin.sh) AERAKI_SCALE_SERVICES=$(AERAKI_SCALE_SERVICES) AERAKI_EDITS=$(AERAKI_EDITS) $(GO) test -count=1 -timeout 60m -v -run 'TestEditLatency$$' ./test/scale

# The soak's size and length; `make test` runs it with 200 services for 4.5 minutes.
# The test fails at once if its go test -timeout leaves no room for the duration.
AERAKI_SOAK_SERVICES ?= 1000
AERAKI_SOAK_DURATION ?= 1h
AERAKI_SOAK_TIMEOUT  ?= 3h

.PHONY: soak
soak: testbin ## Soak the controller in churn for an hour at 1,000 services, istiod restarted twice; checks writes, final state, leaks (AERAKI_SOAK_SERVICES, AERAKI_SOAK_DURATION)
	AERAKI_TESTBIN=$$(hack/testbin.sh) AERAKI_SOAK_SERVICES=$(AERAKI_SOAK_SERVICES) AERAKI_SOAK_DURATION=$(AERAKI_SOAK_DURATION) $(GO) test -count=1 -timeout $(AERAKI_SOAK_TIMEOUT) -v -run 'TestSoak$$' ./test/scale

.PHONY: run-local
run-local: testbin ## Run the controller on a local control plane with the Dubbo sample (Ctrl-C stops it)
	@hack/testbin.sh kubectl >/dev/null
	AERAKI_TESTBIN=$$(hack/testbin.sh) $(GO) run ./hack/runlocal

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code, the CRDs in k8s/crds from pkg/apis, their copy in the chart, and k8s/aeraki.yaml rendered from the chart
	$(CONTROLLER_GEN) object paths=./pkg/apis/...
	$(CONTROLLER_GEN) crd:allowDangerousTypes=true paths=./pkg/apis/... output:crd:artifacts:config=k8s/crds
	rm -f $(CHART)/crds/*.yaml
	cp k8s/crds/*.yaml $(CHART)/crds/
	$(GO) run ./hack/renderchart

# The version of Aeraki's API (github.com/aeraki-mesh/api) our Redis CRDs are held to.
AERAKI_API_VERSION = v1.4.1

.PHONY: aeraki-fields
aeraki-fields: ## Write the field list of Aeraki's Redis API that k8s/crds' test holds our CRDs against (reads its module)
	$(GO) run ./hack/aerakifields $(AERAKI_API_VERSION) >k8s/crds/testdata/aeraki-fields.txt

.PHONY: check-generated
check-generated: generate ## Fail when generated files differ from what is committed
	@git diff --exit-code -- $(GENERATED) || { echo "generated files are stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- $(GENERATED))" || { echo "generated files are not committed:"; git status --porcelain -- $(GENERATED); exit 1; }

$(CONTROLLER_GEN):
	GOBIN=$(dir $@) GOFLAGS= $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)

.PHONY: fmt
fmt: ## Format the code
	$(GO) fmt ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run gofmt, go vet and golangci-lint
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(GOLANGCI_LINT) run ./...

$(GOLANGCI_LINT):
	GOBIN=$(dir $@) GOFLAGS= $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(LINT_VERSION)

.PHONY: docker-build
docker-build: ## Build the image $(IMAGE) (needs a Docker engine; the image runs `make build`)
	docker build -f docker/Dockerfile -t $(IMAGE) .

.PHONY: docker-push
docker-push: ## Push the image $(IMAGE)
	docker push $(IMAGE)

.PHONY: demo-image
demo-image: ## Build and push the demo's sample apps image $(DEMO_IMAGE) (needs a Docker engine)
	docker build -t $(DEMO_IMAGE) demo/apps
	docker push $(DEMO_IMAGE)
