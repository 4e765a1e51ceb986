#include <doctest/doctest.h>

#include <string>

#include "checkpoint_test_util.hpp"
#include "xquant/io/file.hpp"

using namespace xquant;

TEST_CASE("write_file_atomically creates and replaces, leaving no temporary") {
  temp_dir dir;
  const auto target = dir / "out.txt";
  io::write_file_atomically(target, "first");
  CHECK(io::read_file(target) == std::vector<unsigned char>{'f', 'i', 'r', 's', 't'});
  io::write_file_atomically(target, "2nd");
  CHECK(io::read_file(target) == std::vector<unsigned char>{'2', 'n', 'd'});
  io::write_file_atomically(target, "");
  CHECK(io::read_file(target).empty());
  CHECK(dir.entries() == 1);
}

TEST_CASE("an atomic_file that is not committed leaves the target untouched and removes its temporary") {
  temp_dir dir;
  const auto target = dir / "out.txt";
  io::write_file_atomically(target, "old");
  {
    io::atomic_file f(target);
    f.write("new content");
    CHECK(std::filesystem::exists(f.temp_path()));
    CHECK(f.temp_path().parent_path() == target.parent_path());
    CHECK(dir.entries() == 2);
  }  // e.g. an exception while producing the content
  CHECK(io::read_file(target) == std::vector<unsigned char>{'o', 'l', 'd'});
  CHECK(dir.entries() == 1);
}

TEST_CASE("atomic_file errors name the path and the reason") {
  temp_dir dir;
  CHECK_THROWS_WITH_AS(io::atomic_file(dir / "missing" / "x"),
                       doctest::Contains("missing/x': No such file or directory"), io_error);
  CHECK_THROWS_AS(io::atomic_file(""), io_error);
  io::atomic_file f(dir / "x");
  f.commit();
  CHECK_THROWS_AS(f.write("late"), io_error);
  CHECK_THROWS_AS(f.commit(), io_error);
  CHECK(std::filesystem::exists(dir / "x"));
}

TEST_CASE("read_file errors") {
  temp_dir dir;
  CHECK_THROWS_WITH_AS(io::read_file(dir / "nope"), doctest::Contains("cannot open"), io_error);
  CHECK_THROWS_WITH_AS(io::read_file(dir.path), doctest::Contains("not a regular file"), io_error);
}
