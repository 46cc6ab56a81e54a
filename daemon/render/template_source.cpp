#include "render/template_source.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "model/model.hpp"

namespace channeld::render::source {

namespace fs = std::filesystem;

namespace {

std::string trim(std::string_view s) {
  auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  auto last = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(first, last - first + 1));
}

std::string at_line(const std::string& path, int line) {
  return path + ":" + std::to_string(line);
}

// Template names come from kit.toml and from {{> }} tags, which kit authors write: they must
// stay inside the kit folder or the templates folder.
bool is_safe_name(const std::string& name) {
  if (name.empty()) return false;
  fs::path p(name);
  if (p.is_absolute()) return false;
  return std::none_of(p.begin(), p.end(), [](const fs::path& part) { return part == ".."; });
}

}  // namespace

TagKind Library::tag_kind(TokenKind kind) {
  switch (kind) {
    case TokenKind::unescaped:
      return TagKind::unescaped;
    case TokenKind::section:
      return TagKind::section;
    case TokenKind::inverted:
      return TagKind::inverted;
    case TokenKind::section_end:
      return TagKind::section_end;
    default:
      return TagKind::variable;  // partials and comments never become tags
  }
}

Library::Library(std::string kit_folder, std::string templates_dir, const Config::Limits& limits)
    : kit_folder_(std::move(kit_folder)),
      templates_dir_(std::move(templates_dir)),
      limits_(limits) {}

// Checked while inlining, not after: ten partials each including the next ten times would be
// ten billion copies; this stops at the first few megabytes.
void Library::check_size(const Assembled& out, const std::string& origin) const {
  if (out.text.size() > limits_.template_expansion_bytes) {
    throw InputError(origin,
                     "with its partials inlined the template passes "
                     "limits.template_expansion_bytes (" +
                         std::to_string(limits_.template_expansion_bytes) +
                         " bytes): are partials included many times over?");
  }
  if (out.tags.size() > limits_.template_tags) {
    throw InputError(origin,
                     "with its partials inlined the template has more than "
                     "limits.template_tags (" +
                         std::to_string(limits_.template_tags) + ") tags");
  }
}

// Finds tags exactly where kainjow's parser does ("{{" opens; "{{{" closes with "}}}"), so the
// file and line we report are those of the tag kainjow will render.
std::vector<Library::Token> Library::scan(const std::string& text, const std::string& path) {
  std::vector<Token> tokens;
  std::vector<std::size_t> open_index;
  int line = 1;
  std::size_t counted = 0;  // bytes before this offset are already counted in `line`
  auto line_at = [&](std::size_t offset) {
    line += static_cast<int>(std::count(text.begin() + static_cast<std::ptrdiff_t>(counted),
                                        text.begin() + static_cast<std::ptrdiff_t>(offset), '\n'));
    counted = offset;
    return line;
  };

  std::size_t pos = 0;
  while ((pos = text.find("{{", pos)) != std::string::npos) {
    int tag_line = line_at(pos);
    bool triple = pos + 2 < text.size() && text[pos + 2] == '{';
    std::size_t contents = pos + (triple ? 3 : 2);
    std::size_t close = text.find(triple ? "}}}" : "}}", contents);
    if (close == std::string::npos) {
      throw InputError(at_line(path, tag_line), "tag opened here is never closed with }}");
    }
    std::string inner = trim(std::string_view(text).substr(contents, close - contents));
    Token token{TokenKind::variable, inner, pos, close + (triple ? 3 : 2), tag_line};
    if (triple) {
      token.kind = TokenKind::unescaped;
    } else if (!inner.empty()) {
      switch (inner.front()) {
        case '#':
          token.kind = TokenKind::section;
          break;
        case '^':
          token.kind = TokenKind::inverted;
          break;
        case '/':
          token.kind = TokenKind::section_end;
          break;
        case '>':
          token.kind = TokenKind::partial;
          break;
        case '&':
          token.kind = TokenKind::unescaped;
          break;
        case '!':
          token.kind = TokenKind::comment;
          break;
        case '=':
          throw InputError(at_line(path, tag_line),
                           "changing delimiters ({{=<% %>=}}) is not supported: keep {{ }}");
        default:
          break;
      }
      if (token.kind != TokenKind::variable) token.name = trim(std::string_view(inner).substr(1));
    }
    if (token.kind != TokenKind::comment && token.name.empty()) {
      throw InputError(at_line(path, tag_line), "tag names nothing");
    }
    if (token.kind == TokenKind::section || token.kind == TokenKind::inverted) {
      open_index.push_back(tokens.size());
    } else if (token.kind == TokenKind::section_end) {
      if (open_index.empty()) {
        throw InputError(at_line(path, tag_line),
                         "{{/" + token.name + "}} closes a section that was never opened");
      }
      const Token& opener = tokens[open_index.back()];
      if (opener.name != token.name) {
        throw InputError(at_line(path, tag_line), "{{/" + token.name + "}} closes {{#" +
                                                      opener.name + "}} opened on line " +
                                                      std::to_string(opener.line));
      }
      open_index.pop_back();
    }
    tokens.push_back(std::move(token));
    pos = tokens.back().end;
  }
  if (!open_index.empty()) {
    const Token& opener = tokens[open_index.back()];
    throw InputError(
        at_line(path, opener.line),
        "section {{#" + opener.name + "}} is never closed with {{/" + opener.name + "}}");
  }
  return tokens;
}

const Library::File& Library::load(const std::string& name, const std::string& referenced_by) {
  if (!is_safe_name(name)) {
    throw InputError(
        referenced_by,
        "template name '" + name + "' must be a relative path inside the kit or templates folder");
  }
  if (auto it = by_name_.find(name); it != by_name_.end()) return *it->second;
  std::vector<std::string> folders{kit_folder_};
  if (!templates_dir_.empty()) folders.push_back(templates_dir_);
  for (const auto& folder : folders) {
    const fs::path candidate = fs::path(folder) / name;
    std::error_code ec;
    if (!fs::is_regular_file(candidate, ec)) continue;
    std::string path = candidate.lexically_normal().string();
    if (auto it = files_.find(path); it != files_.end()) {
      by_name_.emplace(name, &it->second);
      return it->second;
    }
    // A symlink (or a linked folder on the way) may lead anywhere: to /etc/passwd or to the
    // link-signing key, which a preview or a real email would then carry.
    const fs::path resolved = fs::weakly_canonical(candidate, ec);
    const fs::path root = ec ? fs::path() : fs::weakly_canonical(folder, ec);
    if (ec || !path_within(resolved.string(), root.string())) {
      throw InputError(path, "template leads outside " + folder + " (to " + resolved.string() +
                                 "): templates must stay in the kit or templates folder");
    }
    const auto size = fs::file_size(resolved, ec);
    if (!ec && size > limits_.template_bytes) {
      throw InputError(path, "template is " + std::to_string(size) +
                                 " bytes, over limits.template_bytes (" +
                                 std::to_string(limits_.template_bytes) + ")");
    }
    std::ifstream in(resolved, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    if (!in) throw InputError(path, "cannot read template");
    File file{path, bytes.str(), true, {}};
    // An editor's final newline is not content: without this rule a partial used mid-line
    // would break the line, and every body would end in a blank line before the footer.
    if (file.text.ends_with('\n')) file.text.pop_back();
    if (file.text.ends_with('\r')) file.text.pop_back();
    file.tokens = scan(file.text, path);
    const File& loaded = files_.emplace(path, std::move(file)).first->second;
    by_name_.emplace(name, &loaded);
    return loaded;
  }
  std::string where = "'" + kit_folder_ + "'";
  if (!templates_dir_.empty()) where += " or '" + templates_dir_ + "'";
  throw InputError(referenced_by, "template '" + name + "' not found in " + where);
}

void Library::expand(const File& file, Assembled& out, std::vector<std::string>& chain,
                     const Assembled* body, bool html, int& bodies) {
  std::size_t pos = 0;
  for (const Token& token : file.tokens) {
    out.text.append(file.text, pos, token.begin - pos);
    pos = token.end;
    std::string origin = file.numbered ? at_line(file.path, token.line) : file.path;
    switch (token.kind) {
      case TokenKind::comment:
        break;
      case TokenKind::partial: {
        const File& partial = load(token.name + ".mustache", origin);
        if (std::find(chain.begin(), chain.end(), partial.path) != chain.end()) {
          std::string cycle;
          for (const auto& p : chain) cycle += fs::path(p).filename().string() + " > ";
          throw InputError(origin, "partial '" + token.name + "' includes itself (" + cycle +
                                       fs::path(partial.path).filename().string() + ")");
        }
        if (chain.size() > static_cast<std::size_t>(limits_.partial_depth)) {
          throw InputError(origin, "partials nest deeper than limits.partial_depth (" +
                                       std::to_string(limits_.partial_depth) + ")");
        }
        chain.push_back(partial.path);
        expand(partial, out, chain, body, html, bodies);
        chain.pop_back();
        break;
      }
      case TokenKind::variable:
      case TokenKind::unescaped:
        if (body != nullptr && token.name == "body") {
          if (html && token.kind == TokenKind::variable) {
            throw InputError(origin, "write {{{body}}}: {{body}} would escape the kit's HTML");
          }
          out.text += body->text;
          out.tags.insert(out.tags.end(), body->tags.begin(), body->tags.end());
          ++bodies;
          check_size(out, origin);
          break;
        }
        [[fallthrough]];
      default:
        out.text.append(file.text, token.begin, token.end - token.begin);
        out.tags.push_back(Tag{tag_kind(token.kind), token.name, origin});
        check_size(out, origin);
        break;
    }
  }
  out.text.append(file.text, pos, std::string::npos);
  check_size(out, file.path);
}

Assembled Library::file(const std::string& name, const std::string& referenced_by) {
  const File& f = load(name, referenced_by);
  Assembled out;
  std::vector<std::string> chain{f.path};
  int bodies = 0;
  expand(f, out, chain, nullptr, false, bodies);
  return out;
}

Assembled Library::text(const std::string& text, const std::string& origin) {
  File f{origin, text, false, scan(text, origin)};
  Assembled out;
  std::vector<std::string> chain;
  int bodies = 0;
  expand(f, out, chain, nullptr, false, bodies);
  return out;
}

Assembled Library::layout(const std::string& name, const Assembled& body, bool html,
                          const std::string& referenced_by) {
  const File& f = load(name, referenced_by);
  Assembled out;
  std::vector<std::string> chain{f.path};
  int bodies = 0;
  expand(f, out, chain, &body, html, bodies);
  if (bodies != 1) {
    throw InputError(f.path, bodies == 0 ? "layout never places the kit's body: add {{{body}}}"
                                         : "layout places {{{body}}} more than once");
  }
  return out;
}

}  // namespace channeld::render::source
