// A search of a faiss HNSW index with its own efSearch.
//
// faiss's C API can pass an ID selector with a search (faiss_SearchParameters_new)
// but has no SearchParametersHNSW, so per-query efSearch would otherwise mean
// changing the index-global default, which needs exclusive access and so
// serialises every search behind one that asks for a different value. This
// builds SearchParametersHNSW on the caller's stack: the index is only read.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>

#include <faiss/Index.h>
#include <faiss/impl/HNSW.h>
#include <faiss/impl/IDSelector.h>

namespace {

void copy_message(const char* message, char* error, size_t error_len) {
    if (error == nullptr || error_len == 0) {
        return;
    }
    std::strncpy(error, message, error_len - 1);
    error[error_len - 1] = '\0';
}

}  // namespace

// Searches `n` queries `x` for their `k` nearest among the labels whose bit
// is set in `allowed` (bit l of byte l/8; `allowed_len` bytes), walking the
// graph with `ef_search`. Returns 0, or -1 with a message in `error`.
// `index` is any faiss::Index that passes SearchParametersHNSW down to an
// IndexHNSW (IndexIDMap2 over IndexHNSWFlat does).
extern "C" int lakehouse_hnsw_search(
        const void* index,
        int64_t n,
        const float* x,
        int64_t k,
        int ef_search,
        const uint8_t* allowed,
        size_t allowed_len,
        float* distances,
        int64_t* labels,
        char* error,
        size_t error_len) {
    try {
        faiss::IDSelectorBitmap selector(allowed_len, allowed);
        faiss::SearchParametersHNSW params;
        params.efSearch = ef_search;
        params.sel = allowed != nullptr ? &selector : nullptr;
        static_cast<const faiss::Index*>(index)->search(
                n, x, k, distances, labels, &params);
        return 0;
    } catch (const std::exception& e) {
        copy_message(e.what(), error, error_len);
    } catch (...) {
        copy_message("unknown C++ exception", error, error_len);
    }
    return -1;
}
