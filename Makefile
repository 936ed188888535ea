# brisk — `make` builds the CPU version, `make CUDA=1` adds the CUDA backend,
# `make test` builds and runs the test suite.
CC      ?= cc
CFLAGS  ?= -O2 -g
# -ffp-contract=off: the CPU reference rounds every product and sum on its
# own (no fused multiply-add where the target has one, as on aarch64), so
# its dequantized weights are bit-identical to the CUDA kernels' (built with
# -fmad=false where that matters) on every host.
CFLAGS  += -std=gnu11 -ffp-contract=off -Wall -Wextra -Wno-unused-parameter -pthread -MMD -MP \
           -Iengine -Iorchestrator -Itools -Icache -Ikernels -Iserver -Iapp -I/usr/include/cjson
LDLIBS  += -lcjson -lsqlite3 -lcurl -lwebsockets -lm -lpthread
NVCC    ?= nvcc
# sm_90a itself (not -arch=sm_90a, which also emits compute_90 PTX that
# ptxas rejects): kern_skinny uses wgmma.
NVFLAGS ?= -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Xcompiler -fPIC -Iengine -Ikernels -MMD -MP
CUDA_HOME ?= /usr/local/cuda

B := build
LIB_SRC := $(wildcard engine/*.c orchestrator/*.c tools/*.c cache/*.c server/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(B)/%.o)
CU_SRC  :=
ifeq ($(CUDA),1)
CU_SRC  := $(filter-out kernels/kern_tp.cu,$(wildcard kernels/*.cu))
CFLAGS  += -DBRISK_CUDA -I$(CUDA_HOME)/include
LDLIBS  += -L$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
# NCCL (kern_tp: tensor parallelism across GPUs) only where its header is
# found, so a CUDA toolkit without it still builds everything else.
NCCL_H  := $(firstword $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h))
ifneq ($(NCCL_H),)
CU_SRC  += kernels/kern_tp.cu
CFLAGS  += -DBRISK_NCCL
NVFLAGS += -DBRISK_NCCL -I$(dir $(NCCL_H))
LDLIBS  += -ldl   # kern_tp opens libnccl at run time: binaries run where it is missing
endif
endif
CU_OBJ  := $(CU_SRC:%.cu=$(B)/%.o)
# The benchmark library: harnesses (web environment, WebWalkerQA sites and
# agent, MATH-500 and ParallelPrompt runs, plots) for the benchmarks, the
# app's bench/replay commands and the tests; never part of libbrisk.
BENCH_LIB_SRC := $(wildcard benchmarks/lib/*.c)
BENCH_LIB_OBJ := $(BENCH_LIB_SRC:%.c=$(B)/%.o)
BENCH_INC := -Ibenchmarks/lib
LIBS    := $(B)/libbench.a $(B)/libbrisk.a
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(B)/tests/%)
BENCH_SRC := $(wildcard benchmarks/bench_*.c)
BENCH_BIN := $(BENCH_SRC:benchmarks/%.c=$(B)/benchmarks/%)
ifeq ($(CUDA),1)
BENCH_BIN += $(B)/benchmarks/bench_sync   # CUDA only: kernels of its own, no library
endif

all: $(B)/brisk $(TEST_BIN) $(BENCH_BIN)

# A thin archive: members are referenced by path, so two modules may have
# files of the same name (a plain archive keeps one member per base name).
$(B)/libbrisk.a: $(LIB_OBJ) $(CU_OBJ)
	rm -f $@ && ar rcsT $@ $^

$(B)/libbench.a: $(BENCH_LIB_OBJ)
	rm -f $@ && ar rcsT $@ $^

$(B)/benchmarks/lib/%.o: benchmarks/lib/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(BENCH_INC) -c $< -o $@

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(B)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

# the CPU's dequantization on the GPU, bit for bit: no fused multiply-adds
$(B)/kernels/kern_dequant.o: NVFLAGS += -fmad=false

$(B)/brisk: $(wildcard app/*.c) $(LIBS)
	$(CC) $(CFLAGS) $(BENCH_INC) $(wildcard app/*.c) $(LIBS) $(LDLIBS) -o $@

$(B)/tests/%: tests/%.c $(wildcard tests/*.h) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(BENCH_INC) -Itests $< $(LIBS) $(LDLIBS) -o $@

# test_tok also runs `brisk tokenize` itself.
$(B)/tests/test_tok: tests/test_tok.c app/cmd_tokenize.c app/cmds.h $(wildcard tests/*.h) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests tests/test_tok.c app/cmd_tokenize.c $(LIBS) $(LDLIBS) -o $@

$(B)/benchmarks/%: benchmarks/%.c $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(BENCH_INC) $< $(LIBS) $(LDLIBS) -o $@

$(B)/benchmarks/bench_sync: benchmarks/bench_sync.cu kernels/kern_common.cuh
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) $< -o $@ -L$(CUDA_HOME)/lib64 -lcudart

test: all
	tests/run.sh $(B)/tests

clean:
	rm -rf $(B)

.PHONY: all test clean
-include $(LIB_OBJ:.o=.d) $(CU_OBJ:.o=.d) $(BENCH_LIB_OBJ:.o=.d)
