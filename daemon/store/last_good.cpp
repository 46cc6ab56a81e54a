// LastGoodFiles: rows of last_good_file. Contents cross as hex text (decode/encode on the
// server), so any bytes survive SOCI's text binding.
#include "store/last_good.hpp"

#include "store/session.hpp"

namespace channeld::store {

namespace {

const char* kind_text(LastGoodFiles::Kind kind) {
  return kind == LastGoodFiles::Kind::kit ? "kit" : "partner";
}

std::string to_hex(const std::string& bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

std::string from_hex(const std::string& hex) {
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(nibble(hex[i]) << 4 | nibble(hex[i + 1]));
  return out;
}

}  // namespace

bool LastGoodFiles::save(Kind kind, const std::string& owner_id, const std::string& digest,
                         const Files& files) {
  return store_.impl().run("saving a last good version", [&](soci::session& sql) {
    const std::string k = kind_text(kind);
    soci::transaction tx(sql);
    std::string stored;
    soci::indicator ind = soci::i_null;
    sql << "SELECT digest FROM last_good_file WHERE kind = :k AND owner_id = :o LIMIT 1",
        soci::use(k), soci::use(owner_id), soci::into(stored, ind);
    if (sql.got_data() && ind == soci::i_ok && stored == digest) return false;
    sql << "DELETE FROM last_good_file WHERE kind = :k AND owner_id = :o", soci::use(k),
        soci::use(owner_id);
    for (const auto& [path, bytes] : files) {
      const std::string hex = to_hex(bytes);
      sql << "INSERT INTO last_good_file (kind, owner_id, path, content, digest) "
             "VALUES (:k, :o, :p, decode(:c, 'hex'), :d)",
          soci::use(k), soci::use(owner_id), soci::use(path), soci::use(hex), soci::use(digest);
    }
    tx.commit();
    return true;
  });
}

std::map<std::string, LastGoodFiles::Files> LastGoodFiles::load(Kind kind) {
  return store_.impl().run("reading last good versions", [&](soci::session& sql) {
    const std::string k = kind_text(kind);
    std::map<std::string, Files> out;
    soci::rowset<soci::row> rows =
        (sql.prepare << "SELECT owner_id, path, encode(content, 'hex') FROM last_good_file "
                        "WHERE kind = :k",
         soci::use(k));
    for (const auto& row : rows)
      out[row.get<std::string>(0)][row.get<std::string>(1)] = from_hex(row.get<std::string>(2));
    return out;
  });
}

}  // namespace channeld::store
