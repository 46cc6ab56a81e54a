// The renderer alone: how much CPU one message costs before any I/O (mustache, link tokens,
// quoted-printable, the MIME message), on one thread, for a kit and a partner of a real site.
// bench/latency.sh measures the whole path, where the renderer is a part among PostgreSQL, the
// lanes and the sink, and where runs minutes apart differ by a sixth: this isolates it, so a
// change to it is measured without that noise.
//
//   bench_render --config SITE/channeld.toml --kit ID --partner ID [--messages N] [--passes P]
//
// Renders N messages (the partner's contacts in turn, each its own idempotency key, so every
// message has its own link tokens, as the daemon's do) P times and prints the best pass's
// microseconds per message, with the message size.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "catalog/catalog.hpp"
#include "render/render.hpp"

namespace {

using namespace channeld;

struct Options {
  std::string config, kit, partner;
  std::size_t messages = 20000;
  int passes = 3;
};

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string_view name = argv[i];
    const std::string value = argv[i + 1];
    if (name == "--config") {
      options.config = value;
    } else if (name == "--kit") {
      options.kit = value;
    } else if (name == "--partner") {
      options.partner = value;
    } else if (name == "--messages") {
      options.messages = std::stoul(value);
    } else if (name == "--passes") {
      options.passes = std::stoi(value);
    } else {
      throw std::invalid_argument("unknown option " + std::string(name));
    }
  }
  if (options.config.empty() || options.kit.empty() || options.partner.empty() ||
      options.messages == 0 || options.passes < 1)
    throw std::invalid_argument(
        "usage: bench_render --config FILE --kit ID --partner ID [--messages N] [--passes P]");
  return options;
}

int run(const Options& options) {
  const Config config = catalog::load_config(options.config);
  const auto partners = catalog::load_partners(config.paths.partners);
  const auto found = partners.partners.find(options.partner);
  if (found == partners.partners.end())
    throw std::invalid_argument("no partner " + options.partner + " in " + config.paths.partners);
  const Partner& partner = found->second;
  // The secret only keys the tokens: any will do for timing.
  const std::string secret = "bench-render-link-secret-0123456789";
  const auto valid =
      catalog::validate_kit(config.paths.campaigns + "/" + options.kit, config, partners, secret);
  const Step* step = nullptr;
  for (const auto& s : valid.kit.steps) {
    if (s.channel == Channel::email) {
      step = &s;
      break;
    }
  }
  if (step == nullptr) throw std::invalid_argument("kit " + options.kit + " has no email step");

  std::vector<Contact> contacts;
  catalog::ContactReader reader(partner.contacts_file);
  while (auto contact = reader.next()) contacts.push_back(std::move(*contact));
  if (contacts.empty()) throw std::invalid_argument(partner.contacts_file + " has no contacts");
  std::vector<std::string> keys;
  for (const auto& contact : contacts)
    keys.push_back(valid.kit.id + "/" + step->id + "/" + partner.id + "/" + contact.email);

  const auto ctx = render::make_context(config, valid.kit, partner, secret);
  const auto date = std::chrono::system_clock::now();
  double best = 0;
  std::size_t bytes = 0;
  for (int pass = 0; pass < options.passes; ++pass) {
    const auto start = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < options.messages; ++i) {
      const std::size_t c = i % contacts.size();
      const auto email = render::render_email(*valid.templates, *step, ctx, contacts[c], keys[c],
                                              std::chrono::time_point_cast<SysTime::duration>(date));
      bytes = email.mime.size();
    }
    const std::chrono::duration<double, std::micro> took = std::chrono::steady_clock::now() - start;
    const double per_message = took.count() / static_cast<double>(options.messages);
    if (pass == 0 || per_message < best) best = per_message;
  }
  std::printf("render: %zu messages of %zu bytes, %.1f us per message (best of %d passes, one "
              "thread)\n",
              options.messages, bytes, best, options.passes);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_render: %s\n", e.what());
    return 2;
  }
}
