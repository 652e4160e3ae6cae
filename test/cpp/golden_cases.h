// The stories260K golden continuations (../shared/fixtures/stories260K/golden-greedy.json): prompt
// ids, greedy ids and the top-5 logits at the last prompt position, for the tests that run the
// executor on the real model.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "model/json.h"
#include "model_test_files.h"

namespace fineserve::model::testing {

struct GoldenCase {
  std::vector<int32_t> prompt, greedy;
  std::vector<std::pair<int32_t, double>> top5;
};

inline std::vector<GoldenCase> golden_cases() {
  auto path = require_fixture("golden-greedy.json");
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  json::Value doc = json::parse(text.str(), path.string());
  std::vector<GoldenCase> cases;
  for (const json::Value& c : doc.find("cases")->items()) {
    GoldenCase g;
    for (const auto& v : c.find("prompt_ids")->items()) g.prompt.push_back(static_cast<int32_t>(*v.as_int64()));
    for (const auto& v : c.find("greedy_ids")->items()) g.greedy.push_back(static_cast<int32_t>(*v.as_int64()));
    for (const auto& pair : c.find("last_prompt_logits_top5")->items()) {
      g.top5.push_back({static_cast<int32_t>(*pair.items()[0].as_int64()), *pair.items()[1].as_double()});
    }
    cases.push_back(std::move(g));
  }
  REQUIRE(cases.size() == 4);
  return cases;
}

}  // namespace fineserve::model::testing
