#include "model/model.hpp"

#include <gtest/gtest.h>

#include <limits>

namespace channeld {
namespace {

TEST(PathWithin, AcceptsTheFolderAndWhatLiesBelowIt) {
  EXPECT_TRUE(path_within("/srv/kits/q4", "/srv/kits/q4"));
  EXPECT_TRUE(path_within("/srv/kits/q4/body.mustache", "/srv/kits/q4"));
  EXPECT_TRUE(path_within("/srv/kits/q4/a/b", "/srv/kits/q4/"));
  EXPECT_TRUE(path_within("/etc/passwd", "/"));
}

TEST(PathWithin, RefusesASiblingThatOnlySharesAPrefix) {
  EXPECT_FALSE(path_within("/srv/kits/q4-old/body.mustache", "/srv/kits/q4"));
  EXPECT_FALSE(path_within("/etc/passwd", "/srv/kits/q4"));
  EXPECT_FALSE(path_within("/srv/kits", "/srv/kits/q4"));
  EXPECT_FALSE(path_within("/srv/kits/q4", ""));
}

TEST(Money, ParsesDecimalStringsIntoMinorUnits) {
  EXPECT_EQ(parse_minor_units("5000.00", "x"), 500000);
  EXPECT_EQ(parse_minor_units("12", "x"), 1200);
  EXPECT_EQ(parse_minor_units("0.5", "x"), 50);
  EXPECT_EQ(parse_minor_units("0.05", "x"), 5);
  EXPECT_EQ(parse_minor_units("9999999999.99", "x"), kMaxMinorUnits);
  EXPECT_THROW(parse_minor_units("10000000000", "x"), InputError);
  EXPECT_EQ(parse_minor_units("92233720368547758", "x", std::numeric_limits<std::int64_t>::max()),
            9223372036854775800);
  EXPECT_EQ(
      parse_minor_units("92233720368547758.07", "x", std::numeric_limits<std::int64_t>::max()),
      std::numeric_limits<std::int64_t>::max());
  EXPECT_THROW(
      parse_minor_units("92233720368547758.08", "x", std::numeric_limits<std::int64_t>::max()),
      InputError);
  EXPECT_THROW(parse_minor_units("92233720368547758", "x"), InputError);
  EXPECT_THROW(parse_minor_units("99999999999999999999999", "x"), InputError);
}

TEST(Money, RefusesAmountsThatAreNotPlainDecimals) {
  for (const char* bad : {"", "-1", "1e3", "1.005", ".5", "5.", "1,000.00", " 5", "abc"}) {
    EXPECT_THROW(parse_minor_units(bad, "claims.csv:3: amount_claimed"), InputError) << bad;
  }
}

TEST(Money, ErrorNamesWhereTheAmountCameFrom) {
  try {
    parse_minor_units("1.234", "claims.csv:3: amount_claimed");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(e.where(), "claims.csv:3: amount_claimed");
    EXPECT_NE(std::string(e.what()).find("1.234"), std::string::npos);
  }
}

TEST(Money, FormatsMinorUnitsWithTwoDecimals) {
  EXPECT_EQ(format_minor_units(123456), "1234.56");
  EXPECT_EQ(format_minor_units(5), "0.05");
  EXPECT_EQ(format_minor_units(-5), "-0.05");
  EXPECT_EQ(format_minor_units(0), "0.00");
}

TEST(Tiers, RoundTripThroughTheirNames) {
  for (auto name : {"registered", "silver", "gold", "platinum"}) {
    auto t = tier_from_string(name);
    ASSERT_TRUE(t.has_value());
    EXPECT_EQ(to_string(*t), name);
  }
  EXPECT_FALSE(tier_from_string("diamond").has_value());
  EXPECT_EQ(partner_type_from_string("msp"), PartnerType::msp);
  EXPECT_FALSE(partner_type_from_string("MSP").has_value());
}

}  // namespace
}  // namespace channeld
