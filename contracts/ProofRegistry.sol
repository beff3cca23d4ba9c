// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ProofRegistry (test double)
/// @notice Emits the three ProofRegistry events of SPEC section 1 with exactly the production signatures.
///         No access control or proof checks: it exists to test the exporter's listener on a real chain.
contract ProofRegistry {
    event ProofRegistered(string indexed docHash, address indexed signer, uint256 timestamp);
    event ProofRevoked(string indexed docHash, address indexed by, uint256 timestamp);
    event ProofStoredDual(
        bytes32 indexed docHash,
        address indexed signer,
        bytes20 pgpFingerprint,
        bytes32 pgpSigHash,
        uint256 nftId,
        uint256 timestamp
    );

    mapping(bytes32 => bool) public registered;

    function registerProof(string calldata docHash) external {
        registered[keccak256(bytes(docHash))] = true;
        emit ProofRegistered(docHash, msg.sender, block.timestamp);
    }

    function revokeProof(string calldata docHash) external {
        registered[keccak256(bytes(docHash))] = false;
        emit ProofRevoked(docHash, msg.sender, block.timestamp);
    }

    function storeProofDual(bytes32 docHash, bytes20 pgpFingerprint, bytes32 pgpSigHash, uint256 nftId)
        external
    {
        emit ProofStoredDual(docHash, msg.sender, pgpFingerprint, pgpSigHash, nftId, block.timestamp);
    }

    /// @notice Backlog builder: `count` events of each of the three types in one transaction, with
    ///         document hashes "doc-<n>" (n from `firstId`) so every indexed string differs.
    function emitBatch(uint256 firstId, uint256 count) external {
        for (uint256 i = 0; i < count; ++i) {
            uint256 id = firstId + i;
            string memory docHash = string.concat("doc-", _decimal(id));
            emit ProofRegistered(docHash, msg.sender, block.timestamp);
            emit ProofRevoked(docHash, msg.sender, block.timestamp);
            emit ProofStoredDual(
                keccak256(bytes(docHash)),
                msg.sender,
                bytes20(uint160(id)),
                bytes32(id),
                id,
                block.timestamp
            );
        }
    }

    function _decimal(uint256 value) private pure returns (string memory) {
        if (value == 0) return "0";
        uint256 digits;
        for (uint256 v = value; v != 0; v /= 10) ++digits;
        bytes memory text = new bytes(digits);
        for (; value != 0; value /= 10) text[--digits] = bytes1(uint8(48 + (value % 10)));
        return string(text);
    }
}
