#include "model/json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "model/model_error.h"

namespace fineserve::model::json {

const char* type_name(Type t) {
  switch (t) {
    case Type::Null: return "null";
    case Type::Bool: return "boolean";
    case Type::Number: return "number";
    case Type::String: return "string";
    case Type::Array: return "array";
    case Type::Object: return "object";
  }
  return "?";
}

std::optional<double> Value::as_double() const {
  if (type_ != Type::Number) return std::nullopt;
  double v = 0;
  const char* end = text_.data() + text_.size();
  auto [ptr, ec] = std::from_chars(text_.data(), end, v);
  if (ec != std::errc() || ptr != end || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::optional<int64_t> Value::as_int64() const {
  if (type_ != Type::Number) return std::nullopt;
  int64_t v = 0;
  const char* end = text_.data() + text_.size();
  auto [ptr, ec] = std::from_chars(text_.data(), end, v);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return v;
}

std::optional<uint64_t> Value::as_uint64() const {
  if (type_ != Type::Number || text_.empty() || text_[0] == '-') return std::nullopt;
  uint64_t v = 0;
  const char* end = text_.data() + text_.size();
  auto [ptr, ec] = std::from_chars(text_.data(), end, v);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return v;
}

const Value* Value::find(std::string_view key) const {
  if (type_ != Type::Object) return nullptr;
  auto it = std::lower_bound(by_key_.begin(), by_key_.end(), key,
                             [this](uint32_t i, std::string_view k) { return keys_[i] < k; });
  if (it == by_key_.end() || keys_[*it] != key) return nullptr;
  return &items_[*it];
}

class Parser {
 public:
  Parser(std::string_view text, const std::string& source, int max_depth)
      : s_(text), source_(source), max_depth_(max_depth) {}

  Value document() {
    Value v;
    skip_ws();
    value(v, 0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected content after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { fail_at(pos_, what); }
  [[noreturn]] void fail_at(size_t at, const std::string& what) const {
    throw ModelError(ModelErrc::Corrupt,
                     source_ + ": JSON at byte " + std::to_string(at) + ": " + what);
  }

  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[pos_]; }

  void skip_ws() {
    while (!at_end() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }

  void expect(char c, const char* context) {
    if (peek() != c) fail(std::string("expected '") + c + "' " + context);
    ++pos_;
  }

  void value(Value& out, int depth) {
    if (at_end()) fail("unexpected end of input, expected a value");
    switch (s_[pos_]) {
      case '{': return object(out, depth + 1);
      case '[': return array(out, depth + 1);
      case '"': out.type_ = Type::String; return string(out.text_);
      case 't': return literal(out, "true", Type::Bool, true);
      case 'f': return literal(out, "false", Type::Bool, false);
      case 'n': return literal(out, "null", Type::Null, false);
      default:
        if (s_[pos_] == '-' || (s_[pos_] >= '0' && s_[pos_] <= '9')) return number(out);
        fail(std::string("unexpected character ") + describe(s_[pos_]));
    }
  }

  static std::string describe(char c) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return std::string("'") + c + "'";
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02x", u);
    return buf;
  }

  void literal(Value& out, std::string_view word, Type type, bool b) {
    if (s_.substr(pos_, word.size()) != word) fail("invalid literal");
    pos_ += word.size();
    out.type_ = type;
    out.bool_ = b;
  }

  void enter(int depth) {
    if (depth > max_depth_) fail("nesting deeper than " + std::to_string(max_depth_) + " levels");
  }

  void array(Value& out, int depth) {
    enter(depth);
    out.type_ = Type::Array;
    ++pos_;  // '['
    skip_ws();
    if (peek() == ']') {
      ++pos_;
      return;
    }
    for (;;) {
      skip_ws();
      out.items_.emplace_back();
      value(out.items_.back(), depth);
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect(']', "or ',' in array");
      return;
    }
  }

  void object(Value& out, int depth) {
    enter(depth);
    out.type_ = Type::Object;
    size_t start = pos_;
    ++pos_;  // '{'
    skip_ws();
    if (peek() == '}') {
      ++pos_;
      return;
    }
    for (;;) {
      skip_ws();
      if (peek() != '"') fail("expected a string key in object");
      out.keys_.emplace_back();
      string(out.keys_.back());
      skip_ws();
      expect(':', "after object key");
      skip_ws();
      out.items_.emplace_back();
      value(out.items_.back(), depth);
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      expect('}', "or ',' in object");
      break;
    }
    index_keys(out, start);
  }

  // Sorted key index for find(); duplicate keys are an error because which one wins differs
  // between readers (Python keeps the last), and a model file with two answers is corrupt.
  void index_keys(Value& out, size_t start) {
    if (out.keys_.size() > UINT32_MAX) fail_at(start, "object has too many members");
    out.by_key_.resize(out.keys_.size());
    for (uint32_t i = 0; i < out.by_key_.size(); ++i) out.by_key_[i] = i;
    const auto& keys = out.keys_;
    std::sort(out.by_key_.begin(), out.by_key_.end(),
              [&keys](uint32_t a, uint32_t b) { return keys[a] < keys[b]; });
    for (size_t i = 1; i < out.by_key_.size(); ++i) {
      if (keys[out.by_key_[i]] == keys[out.by_key_[i - 1]]) {
        std::string shown;
        append_quoted(shown, keys[out.by_key_[i]].substr(0, 200));
        fail_at(start, "duplicate key " + shown + " in object");
      }
    }
  }

  void number(Value& out) {
    size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++pos_;
    } else {
      fail("expected a digit");
    }
    if (peek() == '.') {
      ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("expected a digit after '.'");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("expected a digit in exponent");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    out.type_ = Type::Number;
    out.text_.assign(s_.data() + start, pos_ - start);
  }

  unsigned hex4() {
    if (s_.size() - pos_ < 4) fail("truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
      else fail_at(pos_ - 1, "invalid hex digit in \\u escape");
    }
    return v;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xc0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += char(0xe0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3f));
      out += char(0x80 | (cp & 0x3f));
    } else {
      out += char(0xf0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3f));
      out += char(0x80 | ((cp >> 6) & 0x3f));
      out += char(0x80 | (cp & 0x3f));
    }
  }

  void escape(std::string& out) {
    size_t at = pos_ - 1;  // the backslash
    if (at_end()) fail("truncated escape");
    char c = s_[pos_++];
    switch (c) {
      case '"': out += '"'; return;
      case '\\': out += '\\'; return;
      case '/': out += '/'; return;
      case 'b': out += '\b'; return;
      case 'f': out += '\f'; return;
      case 'n': out += '\n'; return;
      case 'r': out += '\r'; return;
      case 't': out += '\t'; return;
      case 'u': break;
      default: fail_at(at, "invalid escape \\" + std::string(1, c));
    }
    uint32_t cp = hex4();
    if (cp >= 0xdc00 && cp <= 0xdfff) fail_at(at, "unpaired low surrogate in \\u escape");
    if (cp >= 0xd800 && cp <= 0xdbff) {
      if (s_.substr(pos_, 2) != "\\u") fail_at(at, "high surrogate without a following \\u low surrogate");
      pos_ += 2;
      uint32_t lo = hex4();
      if (lo < 0xdc00 || lo > 0xdfff) fail_at(at, "high surrogate followed by a non-low-surrogate");
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    append_utf8(out, cp);
  }

  // Length of the valid UTF-8 sequence at pos_ (lead byte >= 0x80), or 0. Rejects overlong
  // forms, surrogates and code points past U+10FFFF, as RFC 3629 requires.
  size_t utf8_length() const {
    auto b = [this](size_t k) { return static_cast<unsigned char>(s_[pos_ + k]); };
    unsigned char c = b(0);
    size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (n == 0 || c > 0xf4 || s_.size() - pos_ < n) return 0;
    for (size_t k = 1; k < n; ++k) {
      if ((b(k) & 0xc0) != 0x80) return 0;
    }
    if (c == 0xe0 && b(1) < 0xa0) return 0;   // overlong
    if (c == 0xed && b(1) >= 0xa0) return 0;  // surrogate
    if (c == 0xf0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xf4 && b(1) >= 0x90) return 0;  // > U+10FFFF
    return n;
  }

  void string(std::string& out) {
    ++pos_;  // opening quote
    for (;;) {
      if (at_end()) fail("unterminated string");
      auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return;
      }
      if (c == '\\') {
        ++pos_;
        escape(out);
      } else if (c < 0x20) {
        fail("control character " + describe(char(c)) + " in string");
      } else if (c < 0x80) {
        out += char(c);
        ++pos_;
      } else {
        size_t n = utf8_length();
        if (n == 0) fail("invalid UTF-8 in string");
        out.append(s_.data() + pos_, n);
        pos_ += n;
      }
    }
  }

  std::string_view s_;
  const std::string& source_;
  int max_depth_;
  size_t pos_ = 0;
};

Value parse(std::string_view text, const std::string& source, int max_depth) {
  return Parser(text, source, max_depth).document();
}

void append_quoted(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

}  // namespace fineserve::model::json
