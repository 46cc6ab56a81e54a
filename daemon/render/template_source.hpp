// Internal to render: turns template files into one mustache source per message part. Partials
// ({{> name}}) and the kit body (a layout's {{{body}}}) are inlined as text at kit load, so a
// part renders in one pass and every tag keeps the file and line it came from for error
// messages. Runs only inside KitTemplates::compile; reads files, nothing else.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "model/model.hpp"

namespace channeld::render::source {

enum class TagKind { variable, unescaped, section, inverted, section_end };

// A tag that reads data, in source order; sections are bracketed by their section_end.
struct Tag {
  TagKind kind;
  std::string name;    // as written, e.g. "partner.branding.logo_url" or "."
  std::string origin;  // "FILE:LINE"
};

struct Assembled {
  std::string text;  // mustache source with partials and body inlined
  std::vector<Tag> tags;
};

// The template files of one kit: names resolve in the kit folder first, then in the shared
// templates folder. Each file is read and checked once, however often it is used. A file
// (symlinks followed) must lie inside the folder it was found in. Sizes, partial depth and
// the inlined size and tag count of each part are bounded by `limits`; the error names the
// limit's config key.
class Library {
 public:
  Library(std::string kit_folder, std::string templates_dir, const Config::Limits& limits);

  // The file `name` (as written in kit.toml) with its partials inlined. `referenced_by` names
  // where the name was written, for the error if the file is missing.
  Assembled file(const std::string& name, const std::string& referenced_by);

  // Template text written inline (a subject in kit.toml), with its partials inlined.
  Assembled text(const std::string& text, const std::string& origin);

  // The layout file `name` with `body` inlined where it says {{{body}}} (or {{&body}}; plain
  // {{body}} too unless `html`, where escaping would show the kit's markup as text).
  Assembled layout(const std::string& name, const Assembled& body, bool html,
                   const std::string& referenced_by);

 private:
  enum class TokenKind { variable, unescaped, section, inverted, section_end, partial, comment };
  struct Token {
    TokenKind kind;
    std::string name;
    std::size_t begin, end;  // the tag's bytes in the file, delimiters included
    int line;
  };
  struct File {
    std::string path;
    std::string text;
    bool numbered = true;  // false for inline text: tags are named by `path` alone
    std::vector<Token> tokens;
  };
  static TagKind tag_kind(TokenKind kind);
  static std::vector<Token> scan(const std::string& text, const std::string& path);
  const File& load(const std::string& name, const std::string& referenced_by);
  void expand(const File& file, Assembled& out, std::vector<std::string>& chain,
              const Assembled* body, bool html, int& bodies);
  void check_size(const Assembled& out, const std::string& origin) const;

  std::string kit_folder_;
  std::string templates_dir_;
  Config::Limits limits_;
  std::map<std::string, File> files_;  // by resolved path
  // By the name a tag or kit.toml gives: a partial included thousands of times (up to
  // limits.template_expansion_bytes) is looked for on disk once, not once per inclusion.
  std::map<std::string, const File*> by_name_;
};

}  // namespace channeld::render::source
