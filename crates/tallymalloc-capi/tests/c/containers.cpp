// A C++ program with heavy std:: container churn on several threads, and every form of
// operator new and delete, including the failing ones: nothrow new returns nullptr, plain new
// calls the new_handler and then throws std::bad_alloc.
#include <dlfcn.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

static int failures = 0;
#define CHECK(condition)                                                   \
  do {                                                                     \
    if (!(condition)) {                                                    \
      failures++;                                                          \
      std::fprintf(stderr, "FAIL line %d: %s\n", __LINE__, #condition);    \
    }                                                                      \
  } while (0)

struct alignas(256) Wide {
  char bytes[300];
};

static std::atomic<int> handler_calls{0};
static void counting_handler() {
  handler_calls++;
  std::set_new_handler(nullptr);  // the next failure throws
}

int main() {
  auto is_ours = reinterpret_cast<int (*)(const void *)>(dlsym(RTLD_DEFAULT, "tm_is_ours"));
  CHECK(is_ours != nullptr);
  if (!is_ours) return 1;

  // Container churn on threads; results checked.
  std::vector<std::thread> threads;
  std::vector<std::uint64_t> sums(8);
  for (int t = 0; t < 8; t++) {
    threads.emplace_back([t, &sums] {
      std::map<std::string, std::vector<int>> index;
      std::unordered_map<int, std::string> names;
      for (int i = 0; i < 60000; i++) {
        std::string key = "key-" + std::to_string((i * 7919 + t) % 5000);
        index[key].push_back(i);
        names[i % 3000] = key + std::string(static_cast<size_t>(i % 40), 'x');
        if (i % 97 == 0) index.erase(index.begin());
      }
      std::uint64_t sum = 0;
      for (auto &entry : index) sum += entry.second.size();
      for (auto &entry : names) sum += entry.second.size();
      sums[t] = sum;
    });
  }
  for (auto &thread : threads) thread.join();
  for (int t = 1; t < 8; t++) CHECK(sums[t] > 0);

  // Every form, served by tallymalloc.
  int *one = new int(5);
  CHECK(is_ours(one) && *one == 5);
  delete one;
  int *many = new int[1000]();
  CHECK(is_ours(many) && many[999] == 0);
  delete[] many;
  Wide *wide = new Wide;
  CHECK(is_ours(wide) && reinterpret_cast<std::uintptr_t>(wide) % 256 == 0);
  delete wide;
  Wide *wides = new Wide[7];
  CHECK(reinterpret_cast<std::uintptr_t>(wides) % 256 == 0);
  delete[] wides;
  auto shared = std::make_shared<std::string>(1000, 'z');
  CHECK(is_ours(shared.get()));

  // Failure: nothrow gives nullptr, plain new calls the handler, then throws bad_alloc.
  const std::size_t impossible = SIZE_MAX / 2;
  void *nothing = ::operator new(impossible, std::nothrow);
  CHECK(nothing == nullptr);
  void *nothing_aligned = ::operator new(impossible, std::align_val_t(64), std::nothrow);
  CHECK(nothing_aligned == nullptr);
  std::set_new_handler(counting_handler);
  bool threw = false;
  try {
    void *never = ::operator new(impossible);
    ::operator delete(never);
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  CHECK(threw && handler_calls == 1);
  threw = false;
  try {
    void *never = ::operator new[](impossible, std::align_val_t(128));
    ::operator delete[](never, std::align_val_t(128));
  } catch (const std::bad_alloc &) {
    threw = true;
  }
  CHECK(threw);

  std::printf("containers: %s\n", failures ? "FAILED" : "all checks passed");
  return failures ? 1 : 0;
}
