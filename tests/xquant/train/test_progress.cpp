#include <doctest/doctest.h>

#include <algorithm>
#include <sstream>
#include <string>

#include "xquant/train/progress.hpp"

using namespace xquant;

namespace {

struct fake_clock {
  double now = 100.0;
  std::function<double()> fn() {
    return [this] { return now; };
  }
};

train::progress_options options(std::ostringstream& out, fake_clock& clock, bool terminal) {
  train::progress_options o;
  o.out = &out;
  o.terminal = terminal;
  o.bar_width = 10;
  o.clock = clock.fn();
  return o;
}

}  // namespace

TEST_CASE("progress on a terminal: a bar redrawn in place, completed with a newline") {
  std::ostringstream out;
  fake_clock clock;
  train::progress p(2, 4, options(out, clock, true));
  CHECK(p.is_terminal());
  p.begin_epoch(0);
  CHECK(out.str().empty());

  clock.now += 0.5;
  p.update(32, 2.0, 16);  // first update: drawn
  CHECK(out.str() == "\repoch 1/2 [==>       ] 1/4  64 img/s  0:00 eta 0:01  loss 2.0000  acc 50.00%");

  clock.now += 0.05;
  p.update(32, 1.0, 32);  // 50 ms later: rate-limited, not drawn
  CHECK(out.str().find("2/4") == std::string::npos);

  clock.now += 1.45;  // t = 2.0 s
  out.str("");
  p.update(32, 0.0, 32);
  // loss (2 + 1 + 0) / 3, accuracy 80 / 96; 96 images in 2 s; eta 2 / 3 * 1 s
  CHECK(out.str() == "\repoch 1/2 [=======>  ] 3/4  48 img/s  0:02 eta 0:00  loss 1.0000  acc 83.33%");

  clock.now += 62.0;  // t = 64 s
  out.str("");
  p.update(32, 1.0, 0);
  p.end_epoch("test_acc 70.00%");
  const std::string last = "\repoch 1/2 [==========] 4/4  2 img/s  1:04  loss 1.0000  acc 62.50%  test_acc 70.00%";
  // The rate-limited draw of step 4, then the final line (shorter: padded to wipe the
  // previous one) and the newline.
  const std::string s = out.str();
  REQUIRE(s.size() > last.size());
  CHECK(s.substr(s.rfind('\r'), last.size()) == last);
  CHECK(s.back() == '\n');
  CHECK(std::count(s.begin(), s.end(), '\n') == 1);
  CHECK(p.mean_loss() == 1.0);
  CHECK(p.accuracy() == 62.5);
}

TEST_CASE("progress on a terminal: a shorter line is padded over the previous one") {
  std::ostringstream out;
  fake_clock clock;
  train::progress_options o = options(out, clock, true);
  o.max_redraws_per_second = 0;  // every update
  train::progress p(1, 100, o);
  p.begin_epoch(0);
  clock.now += 1;
  p.update(1, 12345.678);
  const std::size_t first = out.str().size() - 1;  // without '\r'
  out.str("");
  clock.now += 1;
  p.update(1, -12345.678);  // mean 0: a shorter loss field
  const std::string s = out.str();
  CHECK(s.size() - 1 == first);
  CHECK(s.back() == ' ');
  CHECK(s.find("acc") == std::string::npos);  // no accuracy given, none shown
}

TEST_CASE("progress off a terminal: exactly one plain line per epoch") {
  std::ostringstream out;
  fake_clock clock;
  train::progress p(3, 4, options(out, clock, false));
  CHECK_FALSE(p.is_terminal());
  for (std::size_t epoch = 0; epoch < 2; ++epoch) {
    p.begin_epoch(epoch);
    for (int step = 0; step < 4; ++step) {
      clock.now += 0.25;
      p.update(128, 0.5 + static_cast<double>(epoch), 64 + 32 * epoch);
    }
    p.end_epoch();
  }
  CHECK(out.str() ==
        "epoch 1/3  loss 0.5000  acc 50.00%  time 1.0s  512 img/s\n"
        "epoch 2/3  loss 1.5000  acc 75.00%  time 1.0s  512 img/s\n");
  p.begin_epoch(2);
  p.update(10, 0.25);
  p.end_epoch("test_acc 91.20%");
  CHECK(out.str().substr(out.str().rfind("epoch 3/3")) == "epoch 3/3  loss 0.2500  time 0.0s  - img/s  test_acc 91.20%\n");
}

TEST_CASE("progress redraws at most max_redraws_per_second") {
  std::ostringstream out;
  fake_clock clock;
  train::progress p(1, 1000, options(out, clock, true));  // 10 per second
  p.begin_epoch(0);
  for (int i = 0; i < 1000; ++i) {
    clock.now += 0.001;  // 1000 steps in one second
    p.update(1, 1.0);
  }
  const std::string s = out.str();
  const auto redraws = std::count(s.begin(), s.end(), '\r');
  CHECK(redraws >= 9);
  CHECK(redraws <= 11);
}

TEST_CASE("progress messages keep the bar intact") {
  std::ostringstream out;
  fake_clock clock;
  train::progress p(1, 4, options(out, clock, true));
  p.begin_epoch(0);
  clock.now += 1;
  p.update(8, 1.0, 4);
  out.str("");
  p.message("saved checkpoint");
  const std::string s = out.str();
  CHECK(s.rfind("\rsaved checkpoint", 0) == 0);
  CHECK(s.find(" \n\repoch 1/1 [") != std::string::npos);

  std::ostringstream plain;
  train::progress q(1, 4, options(plain, clock, false));
  q.message("saved checkpoint");
  CHECK(plain.str() == "saved checkpoint\n");
}

TEST_CASE("progress: an open bar is ended by the destructor, long runs show hours") {
  std::ostringstream out;
  fake_clock clock;
  {
    train::progress p(1, 4, options(out, clock, true));
    p.begin_epoch(0);
    clock.now += 3725;  // 1:02:05
    p.update(1, 1.0);
    CHECK(out.str().find("  1:02:05 eta 3:06:15") != std::string::npos);
  }
  CHECK(out.str().back() == '\n');
}

TEST_CASE("progress errors and defaults") {
  std::ostringstream out;
  CHECK_THROWS_AS(train::progress(0, 10), value_error);
  CHECK_THROWS_AS(train::progress(1, 0), value_error);
  train::progress_options o;
  o.out = &out;
  o.max_redraws_per_second = -1;
  CHECK_THROWS_AS(train::progress(1, 1, o), value_error);
  o.max_redraws_per_second = 10;
  train::progress p(2, 1, o);
  CHECK_FALSE(p.is_terminal());  // a stream other than std::cout is not a terminal by default
  CHECK_THROWS_AS(p.update(1, 1.0), value_error);
  CHECK_THROWS_AS(p.end_epoch(), value_error);
  CHECK_THROWS_AS(p.begin_epoch(2), value_error);
  p.begin_epoch(1);
  p.update(1, 1.0);
  p.end_epoch();
  CHECK(out.str().rfind("epoch 2/2  loss 1.0000  time ", 0) == 0);
}
