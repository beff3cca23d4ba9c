// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IdentityNFT (test double)
/// @notice Emits the three IdentityNFT events of SPEC section 1 with exactly the production signatures.
///         Not a real ERC-721: it exists so the exporter's listener can be tested against a real chain.
contract IdentityNFT {
    event MintingEvent(uint256 indexed tokenId, address indexed user);
    event CancelamentoEvent(uint256 indexed oldTokenId, uint256 indexed newTokenId);
    event CancelamentoSimples(uint256 indexed tokenId);

    uint256 public nextTokenId = 1;
    mapping(uint256 => address) public ownerOf;

    function mint(address user) external returns (uint256 tokenId) {
        tokenId = nextTokenId++;
        ownerOf[tokenId] = user;
        emit MintingEvent(tokenId, user);
    }

    /// @notice Cancels a token and issues its replacement to the same owner.
    function reissue(uint256 oldTokenId) external returns (uint256 newTokenId) {
        address user = ownerOf[oldTokenId];
        delete ownerOf[oldTokenId];
        newTokenId = nextTokenId++;
        ownerOf[newTokenId] = user;
        emit CancelamentoEvent(oldTokenId, newTokenId);
    }

    function cancel(uint256 tokenId) external {
        delete ownerOf[tokenId];
        emit CancelamentoSimples(tokenId);
    }

    /// @notice Backlog builder: `count` events of each of the three types in one transaction.
    ///         Writes no storage, so thousands of events fit in one block's gas.
    function emitBatch(uint256 firstTokenId, uint256 count) external {
        for (uint256 i = 0; i < count; ++i) {
            uint256 tokenId = firstTokenId + i;
            emit MintingEvent(tokenId, msg.sender);
            emit CancelamentoEvent(tokenId, tokenId + count);
            emit CancelamentoSimples(tokenId);
        }
    }
}
