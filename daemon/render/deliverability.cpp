// deliverability_warnings: what spam filters would hold against a rendered email.
#include <algorithm>
#include <array>
#include <cctype>

#include "render/render.hpp"

namespace channeld::render {

namespace {

// SpamAssassin's HTML_IMAGE_ONLY_* rules fire for HTML with images and under 400 bytes of
// text per bin, up to 3,200; the first bins score highest. Below this much visible text a
// message with images is flagged.
constexpr std::size_t kMinTextBesideImages = 400;

constexpr std::array<std::string_view, 14> kShorteners = {
    "bit.ly",     "tinyurl.com", "t.co",        "goo.gl",  "ow.ly", "is.gd", "buff.ly",
    "rebrand.ly", "cutt.ly",     "shorturl.at", "tiny.cc", "rb.gy", "t.ly",  "s.id"};

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string host_of(const std::string& url) {
  auto start = url.find("://");
  if (start == std::string::npos) return {};
  start += 3;
  auto end = url.find_first_of("/?#:", start);
  return lower(url.substr(start, end == std::string::npos ? std::string::npos : end - start));
}

struct HtmlFacts {
  std::size_t text_chars = 0;  // visible text, whitespace runs counted once
  std::size_t images = 0;      // <img> tags other than the 1x1 open pixel
  std::size_t images_without_alt = 0;
};

HtmlFacts read_html(const std::string& html) {
  const std::string low = lower(html);
  HtmlFacts facts;
  bool space = true;
  for (std::size_t i = 0; i < low.size();) {
    if (low[i] == '<') {
      const std::size_t end = low.find('>', i);
      if (end == std::string::npos) break;
      const std::string_view tag(low.data() + i, end - i + 1);
      for (const char* hidden : {"<style", "<script", "<head", "<title"}) {
        if (tag.rfind(hidden, 0) == 0) {
          const std::string close = std::string("</") + (hidden + 1);
          const std::size_t closed = low.find(close, end);
          if (closed != std::string::npos) {
            i = closed;
            break;
          }
        }
      }
      if (tag.rfind("<img", 0) == 0 &&
          (tag.size() == 5 || !std::isalpha(static_cast<unsigned char>(tag[4])))) {
        const bool pixel = tag.find("width=\"1\"") != std::string_view::npos &&
                           tag.find("height=\"1\"") != std::string_view::npos;
        if (!pixel) {
          ++facts.images;
          if (tag.find(" alt=") == std::string_view::npos &&
              tag.find("\nalt=") == std::string_view::npos)
            ++facts.images_without_alt;
        }
      }
      if (low[i] == '<') i = low.find('>', i) + 1;
      continue;
    }
    const bool is_space = std::isspace(static_cast<unsigned char>(low[i])) != 0;
    if (low[i] == '&') {
      const std::size_t semi = low.find(';', i);
      if (semi != std::string::npos && semi - i <= 8) i = semi;
    }
    if (!is_space || !space) ++facts.text_chars;
    space = is_space;
    ++i;
  }
  return facts;
}

// Below this many letters (links not counted) the text part is a stub: the layout's footer
// alone, say.
constexpr std::size_t kMinTextLetters = 20;

std::size_t text_letters(const std::string& text) {
  std::size_t letters = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text.compare(i, 7, "http://") == 0 || text.compare(i, 8, "https://") == 0) {
      while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
      continue;
    }
    if (std::isalpha(static_cast<unsigned char>(text[i]))) ++letters;
  }
  return letters;
}

}  // namespace

std::vector<std::string> deliverability_warnings(const RenderedEmail& email) {
  std::vector<std::string> warnings;
  const HtmlFacts facts = read_html(email.html);
  if (facts.images > 0 && facts.text_chars < kMinTextBesideImages) {
    warnings.push_back("little text beside its images (" + std::to_string(facts.text_chars) +
                       " characters of text, " + std::to_string(facts.images) +
                       " images): filters score image-heavy HTML as spam (SpamAssassin "
                       "HTML_IMAGE_ONLY); write at least " +
                       std::to_string(kMinTextBesideImages) + " characters of text");
  }
  if (facts.images_without_alt > 0) {
    warnings.push_back(std::to_string(facts.images_without_alt) +
                       " images without alt text: give every <img> an alt attribute");
  }
  if (text_letters(email.text) < kMinTextLetters) {
    warnings.push_back(
        "the text part is (almost) empty: filters distrust HTML-only mail; write the message in "
        "the text template too");
  }
  for (const auto& link : email.links) {
    if (lower(link).rfind("http://", 0) == 0) {
      warnings.push_back("a link over plain http: " + link + " (use https)");
    }
    const std::string host = host_of(link);
    for (auto shortener : kShorteners) {
      if (host == shortener ||
          (host.size() > shortener.size() &&
           host.compare(host.size() - shortener.size(), std::string::npos, shortener) == 0 &&
           host[host.size() - shortener.size() - 1] == '.')) {
        warnings.push_back("a link through the URL shortener " + host + ": " + link +
                           " (link to the destination itself)");
        break;
      }
    }
  }
  std::size_t letters = 0, capitals = 0;
  for (unsigned char c : email.subject) {
    if (std::isalpha(c)) {
      ++letters;
      if (std::isupper(c)) ++capitals;
    }
  }
  if (letters >= 4 && capitals == letters) {
    warnings.push_back("the subject is in capitals: \"" + email.subject + "\"");
  }
  return warnings;
}

}  // namespace channeld::render
