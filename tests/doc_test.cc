// The document layer: positions, scalar kinds, and the checks every loader relies on.
#include <gtest/gtest.h>

#include "common/doc.h"
#include "common/fields.h"

namespace tpp {
namespace {

TEST(Doc, YamlPositionsAndKinds) {
  auto d = parse_yaml("a: 1\nb:\n  c: 'x'\n  d: 2.5\ne: [1, 2]\nf: true\ng: null\n", "t.yaml");
  ASSERT_TRUE(d) << d.error().str();
  const Node& r = d->root;
  ASSERT_TRUE(r.is_map());
  EXPECT_EQ(r.find("a")->kind, Node::Kind::Int);
  EXPECT_EQ(r.find("a")->i, 1);
  const Node* b = r.find("b");
  EXPECT_EQ(b->find("c")->kind, Node::Kind::String);
  EXPECT_EQ(b->find("d")->kind, Node::Kind::Float);
  EXPECT_EQ(r.find("e")->items.size(), 2u);
  EXPECT_EQ(r.find("f")->kind, Node::Kind::Bool);
  EXPECT_EQ(r.find("g")->kind, Node::Kind::Null);
  EXPECT_EQ(b->key_pos[1], std::make_pair(4, 3));  // "d" on line 4, column 3
}

TEST(Doc, QuotedNumbersAreStrings) {
  auto d = parse_yaml("a: '12'\n", "t.yaml");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->root.find("a")->kind, Node::Kind::String);
}

TEST(Doc, JsonKeyPositions) {
  auto d = parse_json("{\n  \"a\": 1,\n  \"q\": {\n    \"m\": \"fp8\"\n  }\n}\n", "t.json");
  ASSERT_TRUE(d) << d.error().str();
  EXPECT_EQ(d->root.key_pos[0], std::make_pair(2, 3));
  const Node* q = d->root.find("q");
  ASSERT_TRUE(q && q->is_map());
  EXPECT_EQ(q->key_pos[0], std::make_pair(4, 5));
  EXPECT_EQ(q->find("m")->line, 4);
}

TEST(Doc, DuplicateYamlKey) {
  auto d = parse_yaml("a: 1\nb: 2\na: 3\n", "t.yaml");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().str(), "t.yaml:3:1: error: duplicate key 'a' (first at line 1)");
}

TEST(Doc, DeepNestingIsRejectedBeforeParsing) {
  std::string deep(1000, '[');
  auto y = parse_yaml("a: " + deep, "t.yaml");
  ASSERT_FALSE(y);
  EXPECT_EQ(y.error().str(), "t.yaml:1:68: error: nesting deeper than 64 levels");
  auto j = parse_json(std::string(100000, '['), "t.json");
  ASSERT_FALSE(j);
  EXPECT_EQ(j.error().str(), "t.json:1:65: error: nesting deeper than 64 levels");
  std::string dashes;
  for (int k = 0; k < 200; ++k) dashes += "- ";
  EXPECT_FALSE(parse_yaml(dashes + "x\n", "t.yaml"));
}

TEST(Doc, AliasExpansionIsBounded) {
  // "Billion laughs": each level doubles; the converter stops at 200,000 nodes.
  std::string y = "a0: &a0 [x, x]\n";
  for (int k = 1; k < 30; ++k)
    y += "a" + std::to_string(k) + ": &a" + std::to_string(k) + " [*a" + std::to_string(k - 1) +
         ", *a" + std::to_string(k - 1) + "]\n";
  auto d = parse_yaml(y, "t.yaml");
  ASSERT_FALSE(d);
  EXPECT_NE(d.error().message.find("document too large"), std::string::npos);
}

TEST(Fields, SuggestsNearestKey) {
  EXPECT_EQ(nearest("hiden_size", {"hidden_size", "vocab_size", "name"}), "hidden_size");
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
}

TEST(Fields, LenientModeFlagsOnlyNearMissesOfAbsentKeys) {
  auto d = parse_json(R"({"hidden_size": 1, "bos_token_id": 0, "num_key_value_head": 8})", "c.json");
  ASSERT_TRUE(d);
  Fields f(*d, d->root, "config", Strictness::kLenient);
  f.allow({"bos_token_id"});  // a well-known key is never a typo of eos_token_id
  f.integer("hidden_size", 1, 10);
  f.integer_or("num_key_value_heads", 1, 1, 10);
  f.integer_or("eos_token_id", 0, 0, 10);  // present as bos_token_id: not absent-and-near
  auto e = f.finish();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->str(),
            "c.json:1:39: error: unknown key 'num_key_value_head' in config (did you mean "
            "'num_key_value_heads'?)");
}

}  // namespace
}  // namespace tpp
