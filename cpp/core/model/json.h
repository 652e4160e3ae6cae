// A small strict JSON parser (RFC 8259) for the few JSON documents a model folder holds: the
// safetensors header, config.json and model.safetensors.index.json. Strict because those files
// are machine-written: no comments, trailing commas, NaN, duplicate keys or invalid UTF-8, and a
// depth limit so hostile input cannot exhaust the stack. Errors are ModelError(Corrupt) naming
// the source and the byte offset, e.g. "config.json: JSON at byte 17: expected ':' after key".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fineserve::model::json {

enum class Type : uint8_t { Null, Bool, Number, String, Array, Object };

const char* type_name(Type t);  // "null", "boolean", "number", "string", "array", "object"

class Value {
 public:
  Value() = default;

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_number() const { return type_ == Type::Number; }
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }

  bool as_bool() const { return bool_; }                   // false unless is_bool()
  const std::string& as_string() const { return text_; }   // "" unless is_string()
  // Numbers keep their literal so integers past 2^53 stay exact.
  const std::string& number_text() const { return text_; }
  // nullopt unless a number whose value a double can hold (1e999 is not).
  std::optional<double> as_double() const;
  // nullopt unless an integer literal (no fraction or exponent) that fits the type.
  std::optional<int64_t> as_int64() const;
  std::optional<uint64_t> as_uint64() const;

  // Arrays: the elements. Objects: the member values, parallel to keys(), in document order.
  const std::vector<Value>& items() const { return items_; }
  const std::vector<std::string>& keys() const { return keys_; }
  size_t size() const { return items_.size(); }
  // Object member by key, or nullptr (also for non-objects). O(log n).
  const Value* find(std::string_view key) const;

 private:
  friend class Parser;
  Type type_ = Type::Null;
  bool bool_ = false;
  std::string text_;               // string contents or number literal
  std::vector<Value> items_;
  std::vector<std::string> keys_;
  std::vector<uint32_t> by_key_;   // indices into keys_, sorted by key
};

constexpr int kDefaultMaxDepth = 64;

// Parses one JSON document (surrounding whitespace allowed). `source` names the file in errors.
Value parse(std::string_view text, const std::string& source, int max_depth = kDefaultMaxDepth);

// Appends `s` as a JSON string literal. Bytes >= 0x80 pass through unchanged, so UTF-8 stays
// UTF-8 (and invalid bytes stay what they were rather than being silently replaced).
void append_quoted(std::string& out, std::string_view s);

}  // namespace fineserve::model::json
