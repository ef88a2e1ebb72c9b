// Disaggregated prefill and decode (xPyD): x prefill instances and y decode instances, each
// pool with its own split and the serving options, the KV cache of each request sent
// from its prefill instance to its decode instance.
//
// Two passes, because a prefill pool never waits for the decode pool:
// 1. The prefill pool serves every request's prompt (one output token: vLLM's proxy sends the
//    prefill instance the request with max_tokens 1), its instances behind a round-robin
//    router; each prompt's KV is ready when its first token is sampled.
// 2. The KV moves to a decode instance: its bytes are the decode rank's KV bytes a token x the
//    prompt (memory model; with PP, the stage with the most), its time a send/recv over the link between the pools (collective
//    model: NVLink when both pools fit in one node, else the network). The decode pool then
//    serves the request with all of its prompt but the last token cached (the connector leaves
//    that one to the decode instance, whose step samples the first token), from its arrival.
// The request's figures are the decode pass's, timed from the original arrival: TTFT = prefill
// queue and compute + transfer + the decode instance's first step. Not modelled: contention of
// transfers for the same links, the prefill instance holding the KV until it is read.
#pragma once

#include <optional>
#include <vector>

#include "hardware_profiles/hardware.h"
#include "model/model.h"
#include "simulator/memory.h"
#include "simulator/serving.h"
#include "simulator/workload.h"

namespace tpp::sim {

struct DisaggResult {
  ServingResult result;            // the deployment's: every request, both pools' GPUs
  ServingResult prefill, decode;   // each pass's own figures
  Percentiles transfer_ms;         // the KV transfers
  double kv_bytes_per_request = 0; // mean, into one decode GPU
  bool same_node = false;          // the pools share a node (NVLink) or talk over the network
};

// `prefill` and `decode`: fitting plans with pp 1, their dp the instances.
DisaggResult simulate_disaggregated(const model::Model& loaded, const hw::Cluster& c, const MemoryPlan& prefill,
                                    const MemoryPlan& decode, const Workload& w, const Slo& slo);

// The prefill pass alone (its seqs for the decode pass), and the decode pass given them: the
// search reuses one prefill pass for several decode pools.
struct PrefillPass {
  ServingResult result;
  std::vector<double> ready_s;  // by request index: when its first token was sampled (-1: not)
};
PrefillPass simulate_prefill_pool(const model::Model& loaded, const hw::Cluster& c, const MemoryPlan& prefill,
                                  const Workload& w, const Slo& slo);
DisaggResult simulate_decode_pool(const model::Model& loaded, const hw::Cluster& c, const MemoryPlan& prefill,
                                  const MemoryPlan& decode, const Workload& w, const Slo& slo,
                                  const PrefillPass& pass);

}  // namespace tpp::sim
